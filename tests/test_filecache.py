"""FileTokenCache: one JSON file shared by processes, written atomically, never trusted blindly."""

from __future__ import annotations

import json
import logging
import os
import pickle
import stat
import sys
from pathlib import Path

import pytest
import requests
from _helpers import (
    WAIT,
    forking_with_threads,
    held_by_another_thread,
    logged_warnings,
    needs_fork,
    run_in_forked_child,
)
from _procs import TRANSACTION_PARAMS, run_fleet, run_lifetimes, run_thread_fleet

from requests_advanced_auth import ConfigurationError, MemoryTokenCache, Token, TokenCache
from requests_advanced_auth._filecache import MAX_FILE_SIZE, FileTokenCache

filelock = pytest.importorskip("filelock")

KEY = "a" * 32
OTHER_KEY = "b" * 32


def token(value: str, issued_at: float = 1_700_000_000.0, lifetime: float | None = 3600.0):
    return Token.issued(value, issued_at=issued_at, expires_in=lifetime)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "cache" / "tokens.json"


@pytest.fixture
def cache(path, clock):
    return FileTokenCache(path, clock=clock)


def warnings_in(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING]


def stored(path) -> dict:
    return json.loads(path.read_text())


# -- the store ------------------------------------------------------------------------------


def test_file_cache_is_a_token_cache(cache):
    assert isinstance(cache, TokenCache)


def test_a_token_set_by_one_instance_is_read_by_another_on_the_same_file(path, clock, leak_guard):
    leak_guard.watch("tok-shared-1")
    FileTokenCache(path, clock=clock).set(KEY, token("tok-shared-1"))
    held = FileTokenCache(path, clock=clock).get(KEY)
    assert held == token("tok-shared-1")
    assert FileTokenCache(path, clock=clock).get(OTHER_KEY) is None


def test_get_on_a_missing_file_returns_none_without_warning(cache, caplog):
    assert cache.get(KEY) is None
    assert warnings_in(caplog) == []


def test_the_file_layout_is_versioned_json_keyed_by_cache_key(cache, path, leak_guard):
    leak_guard.watch("tok-layout")
    cache.set(KEY, token("tok-layout"))
    assert stored(path) == {"version": 1, "tokens": {KEY: token("tok-layout").to_dict()}}


def test_invalidate_drops_the_token_only_if_the_file_still_holds_it(path, clock, leak_guard):
    leak_guard.watch("tok-old", "tok-new")
    here, there = FileTokenCache(path, clock=clock), FileTokenCache(path, clock=clock)
    here.set(KEY, token("tok-old"))
    there.set(KEY, token("tok-new"))  # another process already replaced it
    assert here.invalidate(KEY, token("tok-old")) is False
    assert here.get(KEY) == token("tok-new")
    assert there.invalidate(KEY, token("tok-new")) is True
    assert here.get(KEY) is None
    assert here.invalidate(KEY, token("tok-new")) is False


def test_another_instance_writing_the_file_is_seen_at_the_next_get(path, clock, leak_guard):
    leak_guard.watch("tok-v1", "tok-v2")
    reader, writer = FileTokenCache(path, clock=clock), FileTokenCache(path, clock=clock)
    assert reader.get(KEY) is None
    writer.set(KEY, token("tok-v1"))
    assert reader.get(KEY) == token("tok-v1")
    writer.set(KEY, token("tok-v2"))
    assert reader.get(KEY) == token("tok-v2")
    writer.invalidate(KEY, token("tok-v2"))
    assert reader.get(KEY) is None


def test_an_unchanged_file_is_not_read_again(cache, path, clock, monkeypatch, leak_guard):
    leak_guard.watch("tok-once")
    FileTokenCache(path, clock=clock).set(KEY, token("tok-once"))
    reads = []
    original = cache._read
    monkeypatch.setattr(cache, "_read", lambda: reads.append(1) or original())
    for _ in range(50):
        assert cache.get(KEY) == token("tok-once")
    assert len(reads) == 1


def test_expired_entries_are_pruned_on_write(cache, path, clock, leak_guard):
    leak_guard.watch("tok-short", "tok-long", "tok-forever", "tok-next")
    cache.set(KEY, token("tok-short", clock(), 10))
    cache.set("c" * 32, token("tok-forever", clock(), None))
    cache.set("d" * 32, token("tok-long", clock(), 3600))
    clock.advance(11)
    cache.set(OTHER_KEY, token("tok-next", clock(), 3600))
    assert sorted(stored(path)["tokens"]) == sorted([OTHER_KEY, "c" * 32, "d" * 32])


def test_entries_show_key_fingerprint_and_expiry_but_no_token(cache, clock, leak_guard):
    leak_guard.watch("tok-listed")
    listed = token("tok-listed", clock(), 60)
    cache.set(KEY, listed)
    [entry] = cache.entries()
    assert (entry.key, entry.fingerprint, entry.expires_at) == (
        KEY, listed.fingerprint, clock() + 60
    )
    assert "tok-listed" not in repr(cache.entries())


def test_clear_deletes_every_entry_and_returns_how_many(cache, path, clock, leak_guard):
    leak_guard.watch("tok-1", "tok-2")
    cache.set(KEY, token("tok-1", clock()))
    cache.set(OTHER_KEY, token("tok-2", clock()))
    assert cache.clear() == 2
    assert cache.get(KEY) is None
    assert FileTokenCache(path).entries() == []


def test_repr_shows_the_path_and_never_a_token(cache, path, leak_guard):
    leak_guard.watch("tok-secret-looking")
    cache.set(KEY, token("tok-secret-looking"))
    assert repr(cache) == f"FileTokenCache(path={str(path)!r})"


def test_a_pickled_copy_uses_the_same_file(cache, path, leak_guard):
    leak_guard.watch("tok-pickled")
    copy = pickle.loads(pickle.dumps(FileTokenCache(path, lock_timeout=3)))  # noqa: S301
    assert (copy.path, copy.lock_timeout) == (path, 3.0)
    copy.set(KEY, token("tok-pickled", lifetime=None))
    assert cache.get(KEY) == token("tok-pickled", lifetime=None)


@pytest.mark.skipif(sys.platform != "linux", reason="platformdirs' Linux layout")
def test_default_path_is_in_the_user_cache_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert FileTokenCache().path == tmp_path / "requests-advanced-auth" / "tokens.json"


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "10", True])
def test_lock_timeout_must_be_a_non_negative_number(path, bad):
    with pytest.raises(ConfigurationError, match="lock_timeout"):
        FileTokenCache(path, lock_timeout=bad)


@pytest.mark.parametrize(
    "bad",
    [86400.001, 1e10, 1e17, 10**400, 10**5000],
    ids=["just over a day", "1e10", "1e17", "a 401-digit int", "a 5001-digit int"],
)
def test_lock_timeout_above_a_day_is_a_configuration_error(path, bad):
    """Far above a day, waiting for the lock would overflow (OverflowError from threading)."""
    with pytest.raises(ConfigurationError, match=r"lock_timeout must be .* at most 86400 "):
        FileTokenCache(path, lock_timeout=bad)


def test_a_lock_timeout_of_a_day_is_accepted_and_waits(path, clock, leak_guard):
    leak_guard.watch("tok-day")
    cache = FileTokenCache(path, lock_timeout=86400, clock=clock)
    assert cache.lock_timeout == 86400.0
    with cache.lock(KEY):
        cache.set(KEY, token("tok-day"))
    assert cache.get(KEY) == token("tok-day")


@pytest.mark.parametrize("bad", [None, "time.time", 1_700_000_000.0])
def test_clock_must_be_callable(path, bad):
    with pytest.raises(ConfigurationError, match="clock must be a callable"):
        FileTokenCache(path, clock=bad)


def test_path_must_be_a_string_or_path(path):
    with pytest.raises(ConfigurationError, match="path must be"):
        FileTokenCache(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("a\0b", "NUL"),
        (Path("cache\0dir") / "tokens.json", "NUL"),
        ("", "empty"),
        (f"cache{os.sep}", "directory"),
        pytest.param(
            "cache/\ud800.json", "cannot encode",
            marks=pytest.mark.skipif(os.name == "nt", reason="Windows names may hold one"),
        ),
    ],
    ids=["NUL in a str", "NUL in a Path", "empty", "trailing separator", "a lone surrogate"],
)
def test_a_path_that_cannot_name_a_file_is_a_configuration_error(bad, problem):
    with pytest.raises(ConfigurationError, match=problem) as info:
        FileTokenCache(bad)
    assert "tokens.json" in str(info.value)  # says how to fix it


@pytest.mark.parametrize("missing", ["filelock", "platformdirs"])
def test_without_the_file_extra_the_error_says_what_to_install(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import missing` fail
    with pytest.raises(ImportError) as info:
        FileTokenCache()
    assert 'pip install "requests-advanced-auth[file]"' in str(info.value)
    assert 'from a clone: pip install -e ".[file]"' in str(info.value)


# -- permissions and links ------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_file_is_0600_and_every_new_directory_0700_even_with_a_permissive_umask(
    tmp_path, leak_guard
):
    leak_guard.watch("tok-private")
    os.chmod(tmp_path, 0o755)  # noqa: S103
    path = tmp_path / "new" / "dir" / "tokens.json"
    old = os.umask(0)
    try:
        cache = FileTokenCache(path)
        with cache.lock(KEY):
            cache.set(KEY, token("tok-private"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700  # intermediate too
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755  # one that existed is left alone
    assert stat.S_IMODE(path.with_name("tokens.json.lock").stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.skipif(os.name != "posix", reason="symlinks need privileges on Windows")
def test_a_symlinked_cache_file_is_refused_and_never_written_through(
    tmp_path, clock, caplog, leak_guard
):
    leak_guard.watch("tok-planted", "tok-mine")
    target = tmp_path / "elsewhere.json"
    planted = {"version": 1, "tokens": {KEY: token("tok-planted").to_dict()}}
    target.write_text(json.dumps(planted))
    link = tmp_path / "tokens.json"
    link.symlink_to(target)
    cache = FileTokenCache(link, clock=clock)

    assert cache.get(KEY) is None  # a planted token is not picked up
    cache.set(KEY, token("tok-mine"))
    assert cache.get(KEY) is None
    assert cache.invalidate(KEY, token("tok-planted")) is False

    assert link.is_symlink()
    assert json.loads(target.read_text()) == planted
    [warning] = warnings_in(caplog)
    assert "symbolic link" in warning.getMessage()


@pytest.mark.skipif(sys.platform != "linux", reason="platformdirs' Linux layout")
def test_an_existing_default_directory_with_loose_permissions_is_tightened_to_0700(
    tmp_path, monkeypatch, clock, leak_guard
):
    leak_guard.watch("tok-private")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    directory = tmp_path / "requests-advanced-auth"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)  # noqa: S103  # as another tool may have left it
    cache = FileTokenCache(clock=clock)
    cache.set(KEY, token("tok-private"))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o600


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_a_directory_the_user_named_is_not_chmodded(tmp_path, clock, caplog, leak_guard):
    leak_guard.watch("tok-private")
    directory = tmp_path / "project"
    directory.mkdir()
    os.chmod(directory, 0o755)  # noqa: S103
    FileTokenCache(directory / "tokens.json", clock=clock).set(KEY, token("tok-private"))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755  # the user's own, left alone
    assert warnings_in(caplog) == []  # only its owner can write there


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("mode", [0o777, 0o770, 0o733], ids=oct)
@pytest.mark.parametrize("first_use", ["write", "read"])
def test_a_named_directory_others_can_write_to_is_left_alone_with_one_warning(
    tmp_path, clock, caplog, leak_guard, mode, first_use
):
    leak_guard.watch("tok-shared-dir")
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, mode)
    path = directory / "tokens.json"
    FileTokenCache(path, clock=clock).set(KEY, token("tok-shared-dir"))
    caplog.clear()
    cache = FileTokenCache(path, clock=clock)
    if first_use == "read":
        assert cache.get(KEY) == token("tok-shared-dir")
    for _ in range(3):
        with cache.lock(KEY):
            cache.set(KEY, token("tok-shared-dir"))
        assert cache.get(KEY) == token("tok-shared-dir")
    assert stat.S_IMODE(directory.stat().st_mode) == mode  # not ours to chmod
    [warning] = warnings_in(caplog)
    text = warning.getMessage()
    assert str(directory) in text
    assert "replace the token file" in text
    assert "private directory" in text


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_a_sticky_world_writable_directory_is_not_warned_about(tmp_path, clock, caplog, leak_guard):
    """As /tmp: the sticky bit stops others from replacing or deleting our files there."""
    leak_guard.watch("tok-sticky")
    directory = tmp_path / "tmp-like"
    directory.mkdir()
    os.chmod(directory, 0o1777)  # noqa: S103
    FileTokenCache(directory / "tokens.json", clock=clock).set(KEY, token("tok-sticky"))
    assert warnings_in(caplog) == []


@pytest.mark.skipif(os.name != "posix", reason="symlinks need privileges on Windows")
def test_a_symlinked_lock_file_is_refused_and_its_target_left_untouched(
    path, clock, caplog, leak_guard
):
    leak_guard.watch("tok-mine")
    path.parent.mkdir(mode=0o700)
    victim = path.parent.parent / "victim.txt"
    victim.write_text("precious")
    os.chmod(victim, 0o644)
    path.with_name("tokens.json.lock").symlink_to(victim)
    cache = FileTokenCache(path, clock=clock)
    with cache.lock(KEY):
        cache.set(KEY, token("tok-mine"))
    assert victim.read_text() == "precious"  # neither truncated ...
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644  # ... nor chmodded
    assert cache.get(KEY).access_token == "tok-mine"  # the cache still works, unlocked
    [warning] = warnings_in(caplog)
    # Our own check, whatever the filelock release (those before 3.20.1 follow the link).
    assert warning.getMessage().startswith(f"not locking {path}.lock: it is a symbolic link")


# -- damaged files --------------------------------------------------------------------------

DAMAGED = {
    "not JSON": b"{this is not json",
    "truncated": json.dumps({"version": 1, "tokens": {KEY: token("x").to_dict()}})[:40].encode(),
    "empty": b"",
    "not UTF-8": b"\xff\xfe\x00garbage",
    "a JSON list": b"[1, 2, 3]",
    "another program's JSON": b'{"tokens": [], "owner": "someone else"}',
    "a future version": b'{"version": 99, "tokens": {}}',
    # json.loads raises RecursionError on these, not ValueError: 200 kB, under MAX_FILE_SIZE
    "deeply nested JSON": b"[" * 100_000 + b"]" * 100_000,
    "a deeply nested entry": (
        b'{"version": 1, "tokens": {"k": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    ),
}


@pytest.mark.parametrize("content", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_file_is_ignored_with_one_warning_and_replaced_on_write(
    cache, path, caplog, content, leak_guard
):
    leak_guard.watch("tok-repaired")
    path.parent.mkdir(mode=0o700)
    path.write_bytes(content)
    for _ in range(3):
        assert cache.get(KEY) is None
    [warning] = warnings_in(caplog)
    assert str(path) in warning.getMessage()

    cache.set(KEY, token("tok-repaired"))
    assert stored(path)["tokens"] == {KEY: token("tok-repaired").to_dict()}
    assert FileTokenCache(path).get(KEY) == token("tok-repaired")
    assert len(warnings_in(caplog)) == 1


NOT_TOKEN_CACHES = {
    "someone's notes": b"my important notes\n",
    "a large file": b"my important notes\n" * (MAX_FILE_SIZE // 19 + 1),
    **{name: content for name, content in DAMAGED.items() if name != "a deeply nested entry"},
}


@pytest.mark.parametrize("content", NOT_TOKEN_CACHES.values(), ids=NOT_TOKEN_CACHES.keys())
def test_clear_refuses_a_file_that_is_not_a_token_cache_and_leaves_it_untouched(
    cache, path, content
):
    """A mistyped --file must not destroy the file: only clear() is careful (set replaces)."""
    path.parent.mkdir(mode=0o700)
    path.write_bytes(content)
    with pytest.raises(OSError, match="is not a requests-advanced-auth token cache") as info:
        cache.clear()
    message = str(info.value)
    assert str(path) in message
    assert "It was not touched" in message
    assert "delete it yourself if it is a damaged token cache" in message
    assert "important" not in message  # nothing of the content is quoted
    assert path.read_bytes() == content


def test_clear_refuses_a_file_it_cannot_read_and_leaves_it_untouched(
    cache, path, monkeypatch
):
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b"my important notes\n")
    real_open = os.open

    def refuse(file, flags, *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(OSError, match="Permission denied") as info:
        cache.clear()
    monkeypatch.undo()
    assert str(path) in str(info.value)
    assert "It was not touched" in str(info.value)
    assert path.read_bytes() == b"my important notes\n"


def test_clear_empties_a_token_cache_with_unreadable_entries(cache, path, clock, leak_guard):
    leak_guard.watch("tok-good")
    path.parent.mkdir(mode=0o700)
    entries = {KEY: token("tok-good", clock()).to_dict(), OTHER_KEY: {"access_token": 7}}
    path.write_text(json.dumps({"version": 1, "tokens": entries}))
    assert cache.clear() == 1
    assert stored(path) == {"version": 1, "tokens": {}}


def test_clear_of_a_missing_file_removes_nothing(cache, path):
    assert cache.clear() == 0
    assert cache.entries() == []


def test_unreadable_entries_are_skipped_and_good_ones_kept(cache, path, caplog, leak_guard):
    leak_guard.watch("tok-good")
    path.parent.mkdir(mode=0o700)
    entries = {KEY: token("tok-good").to_dict(), OTHER_KEY: {"access_token": 7}, "c": "x"}
    path.write_text(json.dumps({"version": 1, "tokens": entries}))
    assert cache.get(KEY) == token("tok-good")
    assert cache.get(OTHER_KEY) is None
    [warning] = warnings_in(caplog)
    assert "2 unreadable entries" in warning.getMessage()


def test_entries_with_nan_or_infinite_times_are_skipped_as_unreadable(
    cache, path, clock, caplog, leak_guard
):
    """A NaN or infinite expiry would keep a planted token FRESH forever."""
    leak_guard.watch("tok-good", "planted")
    path.parent.mkdir(mode=0o700)
    good = json.dumps(token("tok-good").to_dict())
    planted = '{"access_token": "planted", "issued_at": %s, "expires_at": %s}'
    entries = [
        planted % (0, "NaN"),
        planted % (0, "Infinity"),
        planted % (0, "-Infinity"),
        planted % (0, "9" * 400),
        planted % ("NaN", 10),
        planted % ("-Infinity", 10),
    ]
    text = ", ".join(f'"k{n}": {entry}' for n, entry in enumerate(entries))
    path.write_text(f'{{"version": 1, "tokens": {{{text}, "{KEY}": {good}}}}}')
    assert cache.get(KEY) == token("tok-good")
    assert [cache.get(f"k{n}") for n in range(len(entries))] == [None] * len(entries)
    [warning] = warnings_in(caplog)
    assert f"{len(entries)} unreadable entries" in warning.getMessage()
    cache.set(OTHER_KEY, token("tok-good"))  # the rewrite drops them, and is strict JSON
    json.loads(path.read_text(), parse_constant=pytest.fail)
    assert sorted(stored(path)["tokens"]) == sorted([KEY, OTHER_KEY])


def test_an_unreadable_file_is_ignored_with_one_warning_and_replaced_on_write(
    cache, path, clock, caplog, monkeypatch, leak_guard
):
    # We run as root in CI containers, where chmod 000 does not stop reads: refuse the open.
    leak_guard.watch("tok-unreadable", "tok-replacement")
    FileTokenCache(path, clock=clock).set(KEY, token("tok-unreadable"))
    real_open = os.open

    def refuse(file, flags, *args, **kwargs):
        if os.fspath(file) == str(path) and not flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    for _ in range(3):
        assert cache.get(KEY) is None
    [warning] = warnings_in(caplog)
    assert "Permission denied" in warning.getMessage()

    cache.set(KEY, token("tok-replacement"))
    monkeypatch.undo()
    assert FileTokenCache(path, clock=clock).get(KEY) == token("tok-replacement")
    assert len(warnings_in(caplog)) == 1


def test_a_directory_in_place_of_the_file_is_left_alone_and_auth_still_works(
    sandbox, path, caplog
):
    path.mkdir(parents=True)
    session = requests.Session()
    session.auth = sandbox.auth(cache=FileTokenCache(path))
    for _ in range(2):
        assert session.get(sandbox.transactions_url, params=TRANSACTION_PARAMS).status_code == 200
    assert path.is_dir()
    [warning] = warnings_in(caplog)
    assert "not a regular file" in warning.getMessage()
    assert sandbox.provider.token_requests == 1


@pytest.mark.skipif(os.name != "posix", reason="POSIX error text")
def test_a_path_that_cannot_be_created_costs_one_warning_and_auth_still_works(
    sandbox, tmp_path, caplog
):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    session = requests.Session()
    session.auth = sandbox.auth(cache=FileTokenCache(blocker / "sub" / "tokens.json"))
    assert session.get(sandbox.transactions_url, params=TRANSACTION_PARAMS).status_code == 200
    [warning] = warnings_in(caplog)
    assert "Not a directory" in warning.getMessage()


# -- locking --------------------------------------------------------------------------------


def test_lock_gives_up_after_lock_timeout_with_a_warning_and_still_writes(
    path, clock, caplog, leak_guard
):
    leak_guard.watch("tok-unlocked")
    cache = FileTokenCache(path, lock_timeout=0, clock=clock)
    path.parent.mkdir(mode=0o700)
    other_process = filelock.FileLock(str(path) + ".lock", thread_local=False)
    with other_process, cache.lock(KEY):
        cache.set(KEY, token("tok-unlocked"))
    [warning] = warnings_in(caplog)
    assert "going on without the lock" in warning.getMessage()
    assert FileTokenCache(path).get(KEY) == token("tok-unlocked")


def test_lock_is_held_against_other_instances_until_the_block_ends(path):
    first, second = FileTokenCache(path), FileTokenCache(path, lock_timeout=0)
    probe = filelock.FileLock(str(path) + ".lock", thread_local=False)
    with first.lock(KEY), pytest.raises(filelock.Timeout):
        probe.acquire(timeout=0)
    with second.lock(KEY):  # free again: no timeout
        pass
    probe.acquire(timeout=0)
    probe.release()


@needs_fork
@forking_with_threads
def test_a_child_forked_while_a_thread_holds_the_lock_takes_the_lock_and_writes(
    path, clock, leak_guard
):
    """The child inherits neither the thread lock nor the file lock of the parent's thread:
    it waits for the parent to let go of the file, then holds the lock itself."""
    leak_guard.watch("tok-parent", "tok-child")
    cache = FileTokenCache(path, lock_timeout=WAIT, clock=clock)
    cache.set(KEY, token("tok-parent"))

    def child() -> None:
        probe = filelock.FileLock(str(path) + ".lock", thread_local=False)
        with logged_warnings() as warned:
            assert cache.get(KEY) == token("tok-parent")
            with cache.lock(KEY):
                with pytest.raises(filelock.Timeout):  # held: by this child, for real
                    probe.acquire(timeout=0)
                cache.set(KEY, token("tok-child"))
            cache.set(OTHER_KEY, token("tok-child"))  # and let go of
        assert warned == []

    # A fetch in progress in another thread at fork time holds the lock.
    with held_by_another_thread(cache.lock(KEY)) as release:
        code, report = run_in_forked_child(child, in_parent=release.set)
    assert code == 0, report
    assert cache.get(KEY) == token("tok-child")
    assert cache.get(OTHER_KEY) == token("tok-child")
    with cache.lock(KEY):  # the parent's own lock still works
        cache.set(KEY, token("tok-parent"))
    assert FileTokenCache(path).get(KEY) == token("tok-parent")


# -- with the auth, against the sandbox -----------------------------------------------------


def test_a_second_auth_on_the_same_file_reuses_the_token_without_a_request(sandbox, path):
    for _ in range(3):  # three "runs of a cron job"
        session = requests.Session()
        session.auth = sandbox.auth(cache=FileTokenCache(path))
        assert session.get(sandbox.transactions_url, params=TRANSACTION_PARAMS).ok
    assert sandbox.provider.token_requests == 1
    assert sandbox.client_secret not in path.read_text()


def test_a_warm_token_does_not_consult_the_file(sandbox, path, monkeypatch):
    cache = FileTokenCache(path)
    session = requests.Session()
    session.auth = sandbox.auth(cache=cache)
    assert session.get(sandbox.transactions_url, params=TRANSACTION_PARAMS).ok
    consulted = []
    monkeypatch.setattr(cache, "get", lambda key: consulted.append(key))
    for _ in range(20):
        assert session.get(sandbox.transactions_url, params=TRANSACTION_PARAMS).ok
    assert consulted == []


@pytest.mark.parametrize("shared", [True, False], ids=["one file", "memory each"])
def test_eight_auths_over_three_lifetimes_make_one_token_request_per_refresh_with_the_file(
    make_sandbox, path, clock, shared
):
    """A 100 s token is renewed 75 s after it was issued; requests every 10 s over 300 s,
    every token revoked at t = 120: tokens at t = 0, 80, 120 (the revocation), 200 and 280.
    Without sharing, each auth makes all five itself."""
    sandbox = make_sandbox(token_lifetime=100)
    make_cache = (lambda: FileTokenCache(path, clock=clock)) if shared else MemoryTokenCache
    statuses = run_lifetimes(sandbox, make_cache, clock, lifetime=100, revoke_at=12)
    assert statuses == [200] * 8 * 31
    assert sandbox.provider.token_requests == (5 if shared else 8 * 5)


def test_eight_threads_with_their_own_auth_on_one_cache_make_one_token_request(sandbox, path):
    statuses = run_thread_fleet(sandbox, FileTokenCache(path))
    assert statuses == [200] * 8
    assert sandbox.provider.token_requests == 1


def test_eight_processes_make_one_token_request_cold_and_one_more_after_a_revocation(
    sandbox, path
):
    """8 spawned processes share the file: 1 token request on a cold cache; after every
    token is revoked, each sees 401, drops the shared token only if it is still the failed
    one, and together they make 1 more token request."""
    run = run_fleet(sandbox, FileTokenCache(path))
    assert run.cold == [(200, 0)] * 8
    assert run.cold_token_requests == 1
    assert run.revoked == [(200, [401])] * 8  # every process met the revoked token
    assert run.revocation_token_requests == 1
    assert run.exit_codes == [0] * 8
    assert sandbox.client_secret not in path.read_text()


def test_a_stored_token_that_cannot_go_in_a_header_is_skipped_as_unreadable(
    cache, path, caplog, leak_guard
):
    leak_guard.watch("SECRET-TOKEN")
    path.parent.mkdir(mode=0o700)
    entry = token("placeholder").to_dict()
    entry["access_token"] = "SECRET-TOKEN\r\nX-Injected: 1"
    path.write_text(json.dumps({"version": 1, "tokens": {KEY: entry}}))
    assert cache.get(KEY) is None
    [warning] = warnings_in(caplog)
    assert "unreadable entries" in warning.getMessage()


def test_clearing_a_cache_that_does_not_exist_creates_nothing(tmp_path):
    path = tmp_path / "not" / "yet" / "tokens.json"
    assert FileTokenCache(path).clear() == 0
    assert not (tmp_path / "not").exists()
