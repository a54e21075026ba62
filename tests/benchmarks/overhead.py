"""``overhead``: the cost of signing one request with a warm token, and of a whole request.

Two measurements per contender, interleaved (each repeat visits every contender once, in a
shuffled order) and reported as medians:

* signing: the auth's own step on a prepared request reused for every call (its own copy
  per contender, prepared by a plain ``Session`` so it carries the usual default headers),
  with a fresh hooks dict per call so ours's hook list does not grow. The empty loop (that
  reset plus a no-op call) is shown too, and the ratio to the floor both with and without it.
* request path: ``get()`` through the contender's own session with a transport that answers
  at once without a socket, so per-request work outside the auth (``OAuth2Session.request``,
  ``AuthorizedSession.request``, response hooks) shows up as well.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import requests

from . import peers
from .common import (
    TRANSACTION_PARAMS,
    fmt,
    interleaved,
    markdown_table,
    median,
    refresh_interval,
    verdict,
)
from .server import SandboxProcess

EMPTY = "empty loop (hooks reset + no-op call)"
LIFETIME = 3600.0


def _signing_call(sign: Callable[[Any], Any], prep: requests.PreparedRequest) -> Callable[[], Any]:
    def call() -> Any:
        prep.hooks = {"response": []}
        return sign(prep)

    return call


def run(*, quick: bool = False, repeats: int = 0) -> dict[str, Any]:
    # Many short batches, finely interleaved: drift on a shared machine then hits every
    # contender alike, and the median drops the batches that a neighbour's burst spoiled.
    n_sign, n_path = (300, 50) if quick else (5000, 100)
    sign_repeats = repeats or (2 if quick else 45)
    path_repeats = repeats or (2 if quick else 75)
    installed, missing = peers.available()
    names = [peers.FLOOR, peers.OURS, peers.OURS_ONE_STYLE, *installed]
    early = LIFETIME - refresh_interval(LIFETIME)
    with SandboxProcess(token_lifetime=LIFETIME) as server:
        adapters = {name: peers.FACTORIES[name](server, early) for name in names}
        try:
            for adapter in adapters.values():
                answer = adapter.get()  # warm: token fetched, connection open
                if answer.status_code != 200:
                    raise RuntimeError(f"{adapter.name}: warm-up answered {answer.status_code}")
            template = requests.Session().prepare_request(
                requests.Request("GET", server.transactions_url, params=TRANSACTION_PARAMS)
            )
            preps = {name: template.copy() for name in names}
            calls = {EMPTY: _signing_call(lambda r: r, template.copy())}
            for name, adapter in adapters.items():
                calls[name] = _signing_call(adapter.sign, preps[name])
                calls[name]()
                headers = {k.lower(): v for k, v in preps[name].headers.items()}
                if not headers.get("authorization", "").startswith("Bearer "):
                    raise RuntimeError(f"{name}: the signing step did not sign the request")
            sign_samples = interleaved(calls, n_sign, sign_repeats)

            stubs = {}
            for name, adapter in adapters.items():
                stubs[name] = peers.NoIOAdapter()
                adapter.session.mount(server.url + "/", stubs[name])
                # Scanning the environment for proxies and netrc costs every session the
                # same (~200 µs here, 80 variables) and would drown the differences.
                adapter.session.trust_env = False
            path_samples = interleaved(
                {name: adapter.get for name, adapter in adapters.items()}, n_path, path_repeats
            )
            for name, stub in stubs.items():
                if not stub.signed:
                    raise RuntimeError(f"{name}: requests through the session were not signed")
        finally:
            for adapter in adapters.values():
                adapter.close()

    us = {name: median(values) * 1e6 for name, values in sign_samples.items()}
    path_us = {name: median(values) * 1e6 for name, values in path_samples.items()}
    empty = us[EMPTY]
    floor_us, floor_net = us[peers.FLOOR], us[peers.FLOOR] - empty
    rows = []
    results = []
    for name in [EMPTY, *names]:
        contender: Optional[peers.Adapter] = adapters.get(name)
        net = us[name] - empty
        row: dict[str, Any] = {
            "name": name,
            "sign_us": us[name],
            "sign_ratio_to_floor": us[name] / floor_us,
            "sign_net_us": net if contender else None,
            "sign_net_ratio_to_floor": net / floor_net if contender else None,
            "path_us": path_us.get(name),
            "path_over_floor_us": (
                path_us[name] - path_us[peers.FLOOR] if name in path_us else None
            ),
            "on_401": contender.on_401 if contender else None,
            "sign_samples_us": [v * 1e6 for v in sign_samples[name]],
            "path_samples_us": [v * 1e6 for v in path_samples.get(name, [])],
        }
        results.append(row)
        rows.append([
            name, fmt(row["sign_us"]), fmt(row["sign_ratio_to_floor"]) + "x",
            fmt(row["sign_net_us"]),
            (fmt(row["sign_net_ratio_to_floor"]) + "x") if contender else "-",
            fmt(row["path_us"], 1), fmt(row["path_over_floor_us"], 1),
            row["on_401"] or "-",
        ])
    table = markdown_table(
        ["auth", "µs per signing call", "x floor", "µs net of the empty loop", "x floor (net)",
         "µs per `get()` without I/O", "+ µs over the floor's", "on 401"],
        rows,
    )
    notes = [f"- **{a.name}**: signing step = {a.sign_note}" + (f"; {a.note}" if a.note else "")
             for a in adapters.values()]
    notes += [f"- {name}: not installed (`pip install -e \".[bench]\"`)" for name in missing]
    notes.append(
        f"- medians of {sign_repeats} interleaved batches of {n_sign} signing calls and of "
        f"{path_repeats} batches of {n_path} `get()` calls; the `get()` column goes through "
        "each library's own session with a transport that answers 200 at once (no socket) "
        "and `trust_env = False` (the proxy/netrc scan of the environment costs every "
        "session the same)"
    )
    peer_us = [us[name] for name in installed]
    ours_us = us[peers.OURS]
    targets = {
        "ours <= 2x floor (signing)": ours_us / floor_us <= 2.0,
        "ours below every peer (signing)": all(ours_us < v for v in peer_us),
    }
    text = "\n".join([
        "### overhead: signing a request with a warm token", "", table, "", *notes, "",
        *[f"- target: {k}: {verdict(v)} ({fmt(ours_us / floor_us)}x floor)"
          if "2x" in k else f"- target: {k}: {verdict(v)}" for k, v in targets.items()],
    ])
    return {
        "text": text,
        "params": {"signing_calls": n_sign, "signing_batches": sign_repeats,
                   "path_calls": n_path, "path_batches": path_repeats,
                   "token_lifetime_s": LIFETIME, "peer_early_expiry_s": early},
        "results": results,
        "missing_peers": missing,
        "targets": targets,
    }
