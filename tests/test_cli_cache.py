"""`advanced-auth cache`: show, path and clear the FileTokenCache file, never printing a token."""

from __future__ import annotations

import requests

from requests_advanced_auth import FileTokenCache
from requests_advanced_auth.cli import main


def _signed_request(sandbox, cache: FileTokenCache) -> requests.Response:
    with requests.Session() as session:
        session.auth = sandbox.auth(cache=cache)
        return session.get(sandbox.statistics_url, params={
            "page": 1, "siteId": 25, "startDate": "2024-01-01", "endDate": "2024-01-02"})


def test_cache_show_lists_fingerprints_and_never_the_token(sandbox, tmp_path, capsys):
    path = tmp_path / "tokens.json"
    cache = FileTokenCache(path)
    assert _signed_request(sandbox, cache).status_code == 200
    (token,) = sandbox.provider.issued_tokens()
    assert main(["cache", "show", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 token(s)" in out
    assert cache.entries()[0].fingerprint in out
    assert "expires in" in out
    assert token not in out


def test_cache_clear_makes_the_next_request_fetch_a_new_token(sandbox, tmp_path, capsys):
    path = tmp_path / "tokens.json"
    assert _signed_request(sandbox, FileTokenCache(path)).status_code == 200
    assert main(["cache", "clear", "--file", str(path)]) == 0
    assert "removed 1 token(s)" in capsys.readouterr().out
    assert _signed_request(sandbox, FileTokenCache(path)).status_code == 200
    assert sandbox.provider.token_requests == 2


def test_cache_clear_refuses_a_file_that_is_not_a_token_cache_and_leaves_it_alone(
    tmp_path, capsys
):
    notes = tmp_path / "notes.txt"
    notes.write_text("my important notes\n")
    assert main(["cache", "clear", "--file", str(notes)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(notes) in captured.err
    assert "is not a requests-advanced-auth token cache" in captured.err
    assert "delete it yourself" in captured.err
    assert notes.read_text() == "my important notes\n"


def test_cache_path_prints_the_file(tmp_path, capsys):
    path = tmp_path / "somewhere" / "tokens.json"
    assert main(["cache", "path", "--file", str(path)]) == 0
    assert capsys.readouterr().out.strip() == str(path)


def test_cache_with_an_unknown_action_is_a_usage_error(capsys):
    assert main(["cache", "bogus"]) == 2
    assert "invalid choice" in capsys.readouterr().err
