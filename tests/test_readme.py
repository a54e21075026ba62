"""README.md's Python snippets run as written (those that need no real credentials)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _helpers import child_process, read_exports

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
# Snippets that run offline: they use the built-in sandbox or only configure logging.
RUNNABLE = [b for b in BLOCKS if "Sandbox(" in b or "advanced-auth sandbox" in b]


def test_readme_has_runnable_snippets() -> None:
    assert len(RUNNABLE) >= 1


@pytest.fixture(scope="module")
def sandbox_exports() -> Iterator[dict[str, str]]:
    """What ``advanced-auth sandbox`` prints to export, read from a real one of those."""
    code = "from requests_advanced_auth.cli import main; raise SystemExit(main(['sandbox']))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVANCED_STORE_")}
    with child_process([sys.executable, "-c", code], env, 120) as process:
        assert process.stdout is not None
        exports = read_exports(process.stdout, lambda line, _: line.startswith("Serving until"))
        yield {name: shlex.split(value)[0] for name, value in exports.items()}


@pytest.mark.parametrize("code", RUNNABLE, ids=[f"snippet{i}" for i in range(len(RUNNABLE))])
def test_readme_snippet_runs(
    code: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    for name in [n for n in os.environ if n.startswith("ADVANCED_STORE_")]:
        monkeypatch.delenv(name)
    if "advanced-auth sandbox" in code:  # written for the exports of `advanced-auth sandbox`
        for name, value in request.getfixturevalue("sandbox_exports").items():
            monkeypatch.setenv(name, value)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102
    assert capsys.readouterr().out  # every runnable snippet prints its result


def test_readme_pytest_plugin_snippet(pytester: pytest.Pytester) -> None:
    """The 'Testing your own code' snippet passes as a real pytest run."""
    (snippet,) = [b for b in BLOCKS if "pytest_plugins" in b]
    conftest, _, test = snippet.partition("# test_mine.py")
    pytester.makeconftest(conftest.replace("# conftest.py", ""))
    pytester.makepyfile(test_mine=test)
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def path_without(tmp_path: Path, program: str, path: str) -> str:
    """``path`` as seen by a machine without ``program``: one directory of links to the rest."""
    mirror = tmp_path / f"path-without-{program}"
    mirror.mkdir()
    for directory in path.split(os.pathsep):
        if not directory or not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = mirror / entry.name
            if entry.name != program and not os.path.lexists(target):
                target.symlink_to(entry.path)
    return str(mirror)


@pytest.mark.parametrize("curl", ["as installed", "missing"])
def test_readme_cli_recipe_runs(tmp_path: Path, curl: str) -> None:
    """The shell recipe of 'Command line' runs as written (on a free port) and exits 0.

    Without curl (a machine with only Python) it runs without its curl line and the rest
    is still checked; the "missing" case hides curl from PATH to run exactly that.
    """
    (recipe,) = re.findall(
        r"```bash\n(advanced-auth sandbox.*?)```", README.read_text(encoding="utf-8"), re.S
    )
    bin_dir = Path(sys.executable).parent
    if shutil.which("advanced-auth", path=str(bin_dir)) is None:
        pytest.skip("the advanced-auth console script is not installed next to this Python")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVANCED_STORE_")}
    rest = env.get("PATH", os.defpath)
    if curl == "missing":
        rest = path_without(tmp_path, "curl", rest)
    env["PATH"] = f"{bin_dir}{os.pathsep}{rest}"
    has_curl = shutil.which("curl", path=env["PATH"]) is not None
    assert not (curl == "missing" and has_curl)
    lines = recipe.splitlines(keepends=True)
    curl_lines = [line for line in lines if line.startswith("curl ")]
    assert len(curl_lines) == 1  # the one line this test may drop
    if not has_curl:
        lines.remove(curl_lines[0])
    script = "set -e\n" + "".join(lines).replace("8765", str(port))
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "january.csv").read_text().startswith("transactionDate,")
    assert (tmp_path / "statistics.csv").read_text().startswith("date,")
    assert ('"totalEntries"' in done.stdout) == has_curl  # curl's output: one page of JSON
