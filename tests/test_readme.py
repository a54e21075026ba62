"""README.md's Python snippets run as written (those that need no real credentials)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
# Snippets that run offline: they use the built-in sandbox or only configure logging.
RUNNABLE = [b for b in BLOCKS if "Sandbox(" in b or "advanced-auth sandbox" in b]


def test_readme_has_runnable_snippets() -> None:
    assert len(RUNNABLE) >= 1


@pytest.mark.parametrize("code", RUNNABLE, ids=[f"snippet{i}" for i in range(len(RUNNABLE))])
def test_readme_snippet_runs(code: str, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102
    assert capsys.readouterr().out  # every runnable snippet prints its result


def test_readme_pytest_plugin_snippet(pytester: pytest.Pytester) -> None:
    """The 'Testing your own code' snippet passes as a real pytest run."""
    (snippet,) = [b for b in BLOCKS if "pytest_plugins" in b]
    conftest, _, test = snippet.partition("# test_mine.py")
    pytester.makeconftest(conftest.replace("# conftest.py", ""))
    pytester.makepyfile(test_mine=test)
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_readme_cli_recipe_runs(tmp_path: Path) -> None:
    """The shell recipe of 'Command line' runs as written (on a free port) and exits 0."""
    import os
    import shutil
    import socket
    import subprocess
    import sys

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
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    script = "set -e\n" + recipe.replace("8765", str(port))
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "january.csv").read_text().startswith("transactionDate,")
    assert '"totalEntries"' in done.stdout
