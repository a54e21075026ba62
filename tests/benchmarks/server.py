"""The package's sandbox in a child process, driven through its admin API.

The benchmarks time client code (signing, the requests stack, waiting for tokens). Running
the sandbox in the benchmark's own process would make its handlers compete with the client
threads for one GIL, so every client would mostly measure the server. So the sandbox runs as
``python -m requests_advanced_auth.sandbox`` (the same server as ``Sandbox``), its knobs
(``token_lifetime``, ``token_latency``, ``revoke_all()``) and counters (``token_requests``,
``max_concurrent_token_requests``, ``unauthorized``) reached through ``/_sandbox/``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from typing import Any, Optional

import requests

from requests_advanced_auth.sandbox import STATISTICS_PATH, TRANSACTIONS_PATH


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class SandboxProcess:
    """``with SandboxProcess(token_lifetime=1.0) as sb:``: a sandbox on 127.0.0.1:<free port>."""

    def __init__(self, *, token_lifetime: float = 3600.0, token_latency: float = 0.0) -> None:
        self.knobs = {
            "token_lifetime": float(token_lifetime), "token_latency": float(token_latency)
        }
        self.env: dict[str, str] = {}
        self.basic_client_id = ""
        self.basic_client_secret = ""
        self._proc: Optional[subprocess.Popen[str]] = None
        self._admin = requests.Session()  # no auth: the admin API is open on loopback

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> SandboxProcess:
        command = [
            sys.executable, "-m", "requests_advanced_auth.sandbox",
            "--port", "0", "--token-lifetime", repr(self.knobs["token_lifetime"]),
        ]
        self._proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True,
            # Ctrl-C at its default even if this run ignores it (nohup): stop() sends one.
            preexec_fn=_default_sigint if os.name == "posix" else None,
        )
        assert self._proc.stdout is not None
        while True:  # the banner ends with "Serving until Ctrl-C."; EOF means it failed
            line = self._proc.stdout.readline()
            if not line:
                self.stop()
                raise RuntimeError("the sandbox process exited before it was ready")
            line = line.strip()
            if line.startswith("export "):
                name, _, value = line[len("export "):].partition("=")
                self.env[name] = shlex.split(value)[0]
            elif line.startswith("client_secret_basic client:"):
                ident, _, secret = line.split(":", 1)[1].strip().partition(" / ")
                self.basic_client_id, self.basic_client_secret = ident, secret
            elif line.startswith("Serving until"):
                break
        self.configure(**self.knobs)
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self._admin.close()
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # the sandbox's main() stops cleanly on Ctrl-C
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses and credentials ------------------------------------------------------

    @property
    def url(self) -> str:
        return self.env["ADVANCED_STORE_API_URL"]

    @property
    def token_url(self) -> str:
        return self.env["ADVANCED_STORE_TOKEN_URL"]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def transactions_url(self) -> str:
        return self.url + TRANSACTIONS_PATH

    @property
    def statistics_url(self) -> str:
        return self.url + STATISTICS_PATH

    @property
    def client_id(self) -> str:
        return self.env["ADVANCED_STORE_CLIENT_ID"]

    @property
    def client_secret(self) -> str:
        return self.env["ADVANCED_STORE_CLIENT_SECRET"]

    def environment(self) -> dict[str, str]:
        """``ADVANCED_STORE_*`` variables for ``AdvancedAuth.from_env``."""
        return dict(self.env)

    # -- knobs and counters (the admin API) ---------------------------------------------

    def _call(self, method: str, name: str, payload: Optional[dict[str, Any]] = None) -> Any:
        body = json.dumps(payload) if payload is not None else None
        answer = self._admin.request(method, f"{self.url}/_sandbox/{name}", data=body, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def state(self) -> dict[str, Any]:
        """Counters and knobs: ``token_requests``, ``max_concurrent_token_requests``, ..."""
        return dict(self._call("GET", "state"))

    def configure(self, **knobs: float) -> None:
        self.knobs.update(knobs)
        self._call("POST", "config", knobs)

    def revoke_all(self) -> int:
        return int(self._call("POST", "revoke")["revoked"])

    def reset_counters(self) -> None:
        # The admin API's reset also clears the knobs: put ours back.
        self._call("POST", "reset")
        self._call("POST", "config", self.knobs)
