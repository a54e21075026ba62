"""Loopback stand-ins for the socket tests: a recording stub server, and the sandbox as judge.

Where a case needs an API the sandbox does not have (redirects, POST bodies, a foreign host),
a :class:`FrontServer` on 127.0.0.1 stands in and asks the sandbox's provider whether a
token is good (:func:`sandbox_verdict`). The sandbox stays the oracle: nothing here comes
from the package under test.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, NamedTuple, Optional
from urllib.parse import urlsplit

from requests_advanced_auth.sandbox import TRANSACTIONS_PATH, Sandbox

#: A valid transactions query: the sandbox judges a token by what this request would get.
TX_QUERY = "page=1&size=1&siteIds=25&startDate=1704067200&endDate=1704153600"


class Seen(NamedTuple):
    """One request as a server saw it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes


Answer = tuple[int, dict[str, str], bytes]


class FrontServer:
    """A stdlib HTTP/1.1 server on 127.0.0.1:0 that records requests; ``respond`` answers."""

    def __init__(self, respond: Callable[[Seen], Answer]) -> None:
        self.respond = respond
        self.seen: list[Seen] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _read_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _any(self) -> None:
                parts = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                seen = Seen(self.command, parts.path, parts.query, headers, self._read_body())
                with lock:
                    outer.seen.append(seen)
                status, answer_headers, payload = outer.respond(seen)
                self.send_response(status)
                for name, value in answer_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _any

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FrontServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def sandbox_verdict(sb: Sandbox, seen: Seen) -> int:
    """Ask the sandbox whether the request's Authorization header is good for transactions."""
    header = {"authorization": seen.headers.get("authorization", "")}
    return sb.provider.handle("GET", TRANSACTIONS_PATH, TX_QUERY, header, b"").status


def guarded_by(sb: Sandbox) -> Callable[[Seen], Answer]:
    """401 unless the sandbox accepts the request's token; else 200 echoing the body."""

    def respond(seen: Seen) -> Answer:
        return (401, {}, b"") if sandbox_verdict(sb, seen) == 401 else (200, {}, seen.body)

    return respond


def record_requests(sb: Sandbox, path: Optional[str] = None) -> list[Seen]:
    """Every request the sandbox receives from now on (only those to ``path``, if given)."""
    seen: list[Seen] = []
    handle = sb.provider.handle

    def recording(method, path_, query, headers, body):  # type: ignore[no-untyped-def]
        if path in (None, path_):
            seen.append(Seen(method, path_, query, dict(headers), body))
        return handle(method, path_, query, headers, body)

    sb.provider.handle = recording  # type: ignore[method-assign]
    return seen


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RawServer:
    """A loopback server answering each request with the bytes ``respond(path, headers, body)``
    makes, then closing the connection: for answers no HTTP library would send (a token in the
    status line, a broken chunk). One connection at a time; ``seen`` records each request's
    lower-cased headers."""

    def __init__(self, respond) -> None:
        self.respond = respond
        self.seen: list[dict[str, str]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # how soon the serving thread notices the stop
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):  # the client gave up first
                    self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        while len(body) < int(headers.get("content-length") or 0):
            body += conn.recv(65536)
        self.seen.append(headers)
        conn.sendall(self.respond(request_line.split(" ")[1], headers, body))


def closing(status_line: str, *headers: str, body: str = "") -> bytes:
    """A whole answer with its Content-Length, after which the server closes."""
    lines = [status_line, *headers, f"Content-Length: {len(body.encode())}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def broken_chunk(line: str) -> bytes:
    """A chunked 200 whose first chunk-size line is ``line``: requests reports it in full."""
    return (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        f"\r\n{line}\r\n"
    ).encode()
