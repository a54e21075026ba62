"""``import``: wall time of importing the package in a fresh interpreter, against requests.

Each command runs in a new ``python -c`` process, the commands interleaved, medians reported;
``python -c pass`` shows the interpreter's own start-up. A last run lists ``sys.modules``
after ``import requests_advanced_auth`` and checks that no optional dependency came along.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from .common import fmt, markdown_table, median, verdict

COMMANDS = {
    "python -c pass": "pass",
    'python -c "import requests"': "import requests",
    'python -c "import requests_advanced_auth"': "import requests_advanced_auth",
}
#: Must never be imported by ``import requests_advanced_auth`` (optional extras and the rest).
FORBIDDEN = ("pandas", "numpy", "filelock", "platformdirs", "redis", "pytest")


def _wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def _modules(code: str) -> set[str]:
    probe = f"{code}; import sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(out))


def run(*, quick: bool = False, repeats: int = 0) -> dict[str, Any]:
    repeats = repeats or (1 if quick else 15)
    if not quick:
        for code in COMMANDS.values():  # warm the OS file cache and the .pyc files
            _wall(code)
    samples: dict[str, list[float]] = {label: [] for label in COMMANDS}
    labels = list(COMMANDS)
    for repeat in range(repeats):
        shift = repeat % len(labels)
        for label in labels[shift:] + labels[:shift]:
            samples[label].append(_wall(COMMANDS[label]))
    ms = {label: median(values) * 1000 for label, values in samples.items()}
    base = ms['python -c "import requests"']
    startup = ms["python -c pass"]
    rows = [
        [label, fmt(ms[label], 1), fmt(ms[label] - startup, 1), fmt(ms[label] / base) + "x"]
        for label in labels
    ]
    table = markdown_table(
        ["command", "median ms", "ms over `python -c pass`", "x `import requests`"], rows
    )
    ours = _modules("import requests_advanced_auth")
    theirs = _modules("import requests")
    forbidden = sorted(m for m in ours if m.split(".")[0] in FORBIDDEN)
    extra_top = sorted({m.split(".")[0] for m in ours - theirs} - {"requests_advanced_auth"})
    targets = {"no pandas/numpy/filelock/platformdirs/redis/pytest in sys.modules": not forbidden}
    ours_over = ms['python -c "import requests_advanced_auth"'] - base
    text = "\n".join([
        "### import: `import requests_advanced_auth` vs `import requests`", "", table, "",
        f"- medians of {repeats} interleaved runs of each command, each a fresh interpreter "
        f"({sys.executable})",
        f"- the package adds {fmt(ours_over, 1)} ms over `import requests`; top-level modules "
        f"it imports beyond requests': {', '.join(extra_top) or 'none'}",
        f"- forbidden modules found: {', '.join(forbidden) or 'none'}",
        "",
        *[f"- target: {k}: {verdict(v)}" for k, v in targets.items()],
    ])
    return {
        "text": text,
        "params": {"repeats": repeats},
        "results": [
            {"command": label, "median_ms": ms[label],
             "samples_ms": [v * 1000 for v in samples[label]]}
            for label in labels
        ],
        "modules_beyond_requests": extra_top,
        "forbidden_modules": forbidden,
        "targets": targets,
    }
