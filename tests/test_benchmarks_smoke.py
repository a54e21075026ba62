"""The benchmark suite still runs: every benchmark once, with tiny sizes, in a child process.

No timing is asserted (timings belong to the benchmarks, on a quiet machine); only that each
benchmark finishes, prints its table and writes its JSON with a row for ours and the floor.
The peer columns need the ``bench`` extra; without it they are left out and this still runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("overhead", "loopback", "expiry", "revoke", "import", "caches")


def test_every_benchmark_runs_with_quick_sizes_and_writes_its_table_and_json(tmp_path):
    # A child process: the benchmarks set process-wide switches for some peers
    # (OAUTHLIB_INSECURE_TRANSPORT, google-auth's refresh threshold) that must not leak here.
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.run", "all", "--quick",
         "--json-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name in NAMES:
        document = json.loads((tmp_path / f"{name}.json").read_text(encoding="utf-8"))
        assert document["quick"] is True
        table = (tmp_path / f"{name}.md").read_text(encoding="utf-8")
        assert table.startswith(f"### {name}")
        assert table.split("\n\n")[1] in done.stdout  # the same table was printed
        if name == "import":
            assert document["forbidden_modules"] == []
            continue
        if name == "caches":
            rows = {row["name"] for row in document["results"]}
            assert {"MemoryTokenCache (default)", "FileTokenCache"} <= rows
            continue
        rows = {row["name"] for row in document["results"]}
        assert {"constant header (floor)", "requests-advanced-auth"} <= rows
        peers = {"requests-auth", "authlib", "requests-oauthlib", "google-auth"}
        assert peers - rows == set(document["missing_peers"])


def test_an_unknown_benchmark_name_is_a_usage_error():
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.run", "speed"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "unknown benchmark speed" in done.stderr
