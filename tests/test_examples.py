"""The examples run as scripts against the built-in sandbox (no ADVANCED_STORE_* variables)."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from requests_advanced_auth.pagination import TRANSACTION_FIELDS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ADVANCED_STORE_")}
    env = {**clean, "PYTHONPATH": os.pathsep.join([str(ROOT), clean.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == [
        "existing_script.py", "quickstart.py", "transactions_to_dataframe.py"
    ]


def test_quickstart_calls_each_api_once(tmp_path):
    done = run_example("quickstart.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "built-in sandbox" in done.stderr
    assert re.search(r"transactions, January 2024, site 25: \d+ in \d+ pages", done.stdout)
    assert "statistics, January 2024, site 25: 31 days" in done.stdout


def test_existing_script_runs_through_a_session(tmp_path):
    done = run_example("existing_script.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"by status: \{'\w+': \d+", done.stdout)


def test_main_job_writes_transactions_csv_in_the_current_directory(tmp_path):
    done = run_example("transactions_to_dataframe.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    count = int(done.stdout.split()[0])
    assert count > 1000
    assert "transactions updated 2024-01-01 to 2024-12-31 (UTC), sites 25,26" in done.stdout
    # The summary: one line per site and status, with counts and commission sums.
    for site in ("25", "26"):
        assert re.search(rf"^{site}\s+confirmed\s+\d+\s+[\d.]+\s+[\d.]+$", done.stdout, re.M)
    for status in ("pending", "revoked"):
        assert len(re.findall(rf"^\s+{status}\s+\d+\s+[\d.]+", done.stdout, re.M)) == 2
    with (tmp_path / "transactions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == count
    assert list(rows[0]) == list(TRANSACTION_FIELDS)
    assert rows[0]["transactionDate"].endswith("+00:00")  # timezone-aware datetimes
    assert f"wrote transactions.csv ({count} rows" in done.stdout
    assert "\r" not in done.stderr  # stderr is a pipe here: no progress line


def test_main_job_options_change_sites_dates_and_output(tmp_path):
    done = run_example(
        "transactions_to_dataframe.py", "--site", "27", "--since", "2024-03-01",
        "--until", "2024-03-31", "-o", "march.csv", cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    with (tmp_path / "march.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    assert {row["siteId"] for row in rows} == {"27"}
    assert all(row["updatedAt"].startswith("2024-03") for row in rows)
    assert not (tmp_path / "transactions.csv").exists()


@pytest.mark.parametrize("script", ["quickstart.py", "transactions_to_dataframe.py"])
def test_examples_with_wrong_credentials_fail_with_a_message(tmp_path, script, sandbox,
                                                             leak_guard):
    """With ADVANCED_STORE_* set, the examples use them (here: the sandbox, a wrong secret)."""
    wrong = "definitely-wrong-secret-77"
    leak_guard.watch(wrong)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ADVANCED_STORE_")},
        **sandbox.environment(),
        "ADVANCED_STORE_CLIENT_SECRET": wrong,
        "ADVANCED_STORE_SITE_IDS": "25",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 1
    assert "invalid_client" in done.stderr
    assert wrong not in done.stdout + done.stderr
    assert sandbox.provider.token_requests == 1  # it went to the configured server


def test_main_job_with_credentials_uses_the_configured_server(tmp_path, sandbox):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ADVANCED_STORE_")},
        **sandbox.environment(),
        "ADVANCED_STORE_SITE_IDS": "26",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "transactions_to_dataframe.py"), "--until", "2024-01-31"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "built-in sandbox" not in done.stderr
    assert "sites 26" in done.stdout
    assert sandbox.provider.tokens_issued == 1
    assert sandbox.provider.api_requests >= 1


def test_main_job_runs_on_the_exports_of_a_sandbox_alone(tmp_path, sandbox):
    """What README's CLI recipe exports is enough for the examples too: no --site needed."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ADVANCED_STORE_")},
        **sandbox.environment(),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "transactions_to_dataframe.py"), "--until", "2024-01-31"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "sites 25,26" in done.stdout


def test_main_job_checks_its_output_folder_before_pulling(tmp_path):
    done = run_example("transactions_to_dataframe.py", "-o", str(tmp_path / "no" / "x.csv"),
                       cwd=tmp_path)
    assert done.returncode == 2
    assert "the folder of --output does not exist" in done.stderr
    assert "transactions updated" not in done.stdout  # nothing was pulled
