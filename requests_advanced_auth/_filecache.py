"""``FileTokenCache``: one JSON file shared by every process of one user on one machine.

Rules:

* The file is only ever replaced whole: a temp file in the same directory is written, fsynced
  and ``os.replace``-d over it, so readers see the old or the new content, never half of one.
  The temp file is created 0600 (``mkstemp``); every directory level we create is 0700.
  An existing directory the caller named is theirs: never chmodded, but if others may write
  to it (group- or world-writable, not sticky) one warning says they can replace the file.
* The cache file is never followed through a symbolic link: a symlink (or a directory, or any
  other non-regular file) in its place is refused with a warning and left alone, and reads
  open the file with ``O_NOFOLLOW`` where the platform has it.
* Reads take no lock. ``get`` stats the file and re-reads it only when its identity
  (inode, size, mtime, ctime) changed; otherwise it answers from the parsed copy in memory.
* Writes (``set``, ``invalidate``, ``clear``) are read-modify-write under the lock: an
  in-process ``threading.Lock`` first (threads of one process queue there, not on the file),
  then ``filelock.FileLock`` on ``<file>.lock`` (processes). Under the lock the file is always
  re-read in full, so a write never works from an outdated copy. Expired entries are pruned
  on every write.
* ``lock(key)`` is the same lock: held while one process fetches, so N processes that need a
  token at once make one token request. Waiting is bounded by ``lock_timeout`` (at most
  ``_cache.MAX_LOCK_TIMEOUT``, a day): after that a warning is logged and the caller goes on
  without the lock (a duplicate token request is better than a hang). A fork()ed child
  gets a thread lock and a file lock of its own (see ``_cache``): the parent's, perhaps
  held by a thread the child does not have, are never used or released there.
* The cache must never break auth: a corrupt, truncated, foreign or unreadable file is
  ignored with one warning per bad version of the file and replaced on the next write; a
  failed write is logged and the token is still used from memory.
* ``clear`` (an administrator's command, not auth) is the exception: it replaces only a
  file it has read as a token cache, and refuses anything else with an OSError.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Final, Iterator, NamedTuple, Optional, Union

from ._cache import MAX_LOCK_TIMEOUT, reset_after_fork
from ._checks import checked_clock, checked_seconds
from ._token import Token
from .exceptions import ConfigurationError

log = logging.getLogger("requests_advanced_auth")

#: Version of the file layout ``{"version": 1, "tokens": {key: Token.to_dict()}}``.
FILE_FORMAT_VERSION: Final = 1
#: Name of the directory under the user's cache directory, and of the default file in it.
APP_NAME: Final = "requests-advanced-auth"
DEFAULT_FILE_NAME: Final = "tokens.json"
#: A token cache holds a few entries of a few hundred bytes; a file larger than this is not
#: ours, and is not read into memory.
MAX_FILE_SIZE: Final = 4 * 1024 * 1024
#: Seconds to wait for another process's fetch before going on without the lock: a token
#: request takes well under a second; one that retries with backoff can take about half a
#: minute (see _fetch.DEFAULT_TIMEOUT and DEFAULT_RETRIES).
DEFAULT_LOCK_TIMEOUT: Final = 30.0

# File locks inherited over fork() from a parent that may hold them; see _after_fork_in_child.
_INHERITED_LOCKS: Final[list[object]] = []

_MAX_PROBLEMS: Final = 64  # problems remembered for warn-once; then they may be reported again

_O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in must not block a read
_O_BINARY: Final = getattr(os, "O_BINARY", 0)
_READ_FLAGS: Final = os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_BINARY

# (device, inode, size, mtime_ns, ctime_ns): the file changed if any of these did. The inode
# is in it because every write is a new file (os.replace), and coarse mtime ticks alone can
# miss two writes of the same size within one tick.
_Signature = tuple[int, int, int, int, int]
_NO_FILE: Final[_Signature] = (-1, -1, -1, -1, -1)


class CacheEntry(NamedTuple):
    """What :meth:`FileTokenCache.entries` shows of one entry: never the token itself."""

    key: str
    fingerprint: str
    expires_at: Optional[float]


def default_path() -> Path:
    """``<user cache dir>/requests-advanced-auth/tokens.json`` (see :class:`FileTokenCache`)."""
    platformdirs = _import("platformdirs")
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)) / DEFAULT_FILE_NAME


def _import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError as exc:
        raise ImportError(
            f"FileTokenCache needs the {name!r} package: "
            'pip install "requests-advanced-auth[file]" (from a clone: pip install -e ".[file]")'
        ) from exc


def _signature(st: os.stat_result) -> _Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


_SYMLINK: Final = "it is a symbolic link (refused: it could point anywhere)"
_NOT_REGULAR: Final = "it is not a regular file"


class _Unusable(Exception):
    """The file cannot be used; ``reason`` never quotes its content.

    ``key`` identifies the problem for warn-once: by default the reason and the version of
    the file (its signature), so a new bad version is reported again. ``foreign``: the file
    was read, and is not a token cache (or a damaged one: there is no telling them apart).
    """

    def __init__(
        self,
        reason: str,
        signature: _Signature,
        key: Optional[tuple[object, ...]] = None,
        *,
        foreign: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.signature = signature
        self.key = key if key is not None else ("file", signature, reason)
        self.foreign = foreign  # its content is not a token cache (else: it cannot be read)


class FileTokenCache:
    """Tokens in one JSON file, shared by the processes of one user (cron jobs, pools, notebooks).

    ::

        cache = FileTokenCache()          # or FileTokenCache("/run/myapp/tokens.json")
        session.auth = AdvancedAuth(client_id, client_secret, cache=cache)

    The default file is ``tokens.json`` in the user's cache directory (platformdirs):
    ``~/.cache/requests-advanced-auth/`` on Linux (``$XDG_CACHE_HOME`` if set),
    ``~/Library/Caches/requests-advanced-auth/`` on macOS and
    ``%LOCALAPPDATA%\\requests-advanced-auth\\Cache\\`` on Windows (where the 0600/0700 modes
    are not enforced by ``chmod``: the per-user profile's ACLs protect the file).

    The file holds access tokens (never the client secret) under a hash of token URL, client
    id, audiences, scope and extra parameters. A copy made by pickling (``multiprocessing``
    with spawn, for example) refers to the same file.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str], None] = None,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        filelock = _import("filelock")
        # Our own directory (the default one) is kept at 0700 even if it already existed;
        # a directory the caller names is theirs, and only created 0700 if missing.
        self._tighten = path is None
        path = default_path() if path is None else _checked_path(path)
        lock_timeout = checked_seconds(lock_timeout, "lock_timeout", MAX_LOCK_TIMEOUT)
        self.path = Path(os.path.abspath(os.fspath(path)))
        self.lock_timeout = lock_timeout
        self._clock = checked_clock(clock)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._timeout_error: type[BaseException] = filelock.Timeout
        self._file_lock_class: Any = filelock.FileLock
        self._new_locks()
        self._held = threading.local()  # .depth: lock nesting of this thread
        # (signature, tokens) replaced as a whole; read without a lock.
        self._state: tuple[Optional[_Signature], dict[str, Token]] = (None, {})
        self._warned: set[tuple[object, ...]] = set()
        self._directory_checked = False
        reset_after_fork(self)

    def _new_locks(self) -> None:
        self._file_lock = self._file_lock_class(
            os.fspath(self._lock_path), mode=0o600, thread_local=False
        )
        self._thread_lock = threading.Lock()

    def _after_fork_in_child(self) -> None:
        # The thread lock may be held by a thread that does not exist here. The file lock,
        # if a parent's thread holds it, is the parent's: its descriptor is shared with the
        # parent, so unlocking or closing it here would unlock the parent too. Kept alive
        # (a finalizer could unlock it) and never used again; the child opens its own.
        _INHERITED_LOCKS.append(self._file_lock)
        self._new_locks()

    # -- TokenCache -------------------------------------------------------------------------

    def get(self, key: str) -> Optional[Token]:
        return self._tokens().get(key)

    def set(self, key: str, token: Token) -> None:
        def store(tokens: dict[str, Token]) -> bool:
            tokens[key] = token
            return True

        self._modify(store)

    def invalidate(self, key: str, token: Token) -> bool:
        removed = False

        def drop(tokens: dict[str, Token]) -> bool:
            nonlocal removed
            held = tokens.get(key)
            if held is None or held.access_token != token.access_token:
                return False
            del tokens[key]
            removed = True
            return True

        self._modify(drop)
        return removed

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """The file-wide lock: held while one process fetches the token for ``key``."""
        return self._locked()

    # -- administration (the ``advanced-auth cache`` command) -------------------------------

    def entries(self) -> list[CacheEntry]:
        """Key, token fingerprint and expiry of every entry, sorted by key; no tokens."""
        return [
            CacheEntry(key, token.fingerprint, token.expires_at)
            for key, token in sorted(self._tokens().items())
        ]

    def clear(self) -> int:
        """Delete every entry; returns how many there were. Raises OSError if it cannot.

        Unlike a write, which replaces a damaged file, ``clear`` refuses (OSError) a file
        that is not a token cache, or that it cannot read, and leaves it as it is: a
        mistyped ``advanced-auth cache clear --file`` must not destroy someone's file.
        """
        if not os.path.lexists(self.path):
            return 0  # nothing to clear, and nothing (no directory, no lock file) made
        with self._locked():
            try:
                signature, tokens = self._read()
            except _Unusable as problem:
                if problem.foreign:
                    raise OSError(
                        f"{self.path} is not a requests-advanced-auth token cache: "
                        f"{problem.reason}. It was not touched; delete it yourself if it is "
                        "a damaged token cache."
                    ) from None
                raise OSError(
                    f"cannot clear {self.path}: {problem.reason}. It was not touched."
                ) from None
            self._state = (signature, tokens)
            self._write({}, quiet=False)
        return len(tokens)

    # -- reading ----------------------------------------------------------------------------

    def _tokens(self) -> dict[str, Token]:
        """The parsed file, re-read only if it changed since the last read.

        Under the lock it is always re-read: the re-check before a fetch, and every write,
        must not trust a signature that coarse timestamps could have left unchanged.
        """
        signature, tokens = self._state
        if not getattr(self._held, "depth", 0):
            try:
                current = _signature(os.lstat(self.path))
            except FileNotFoundError:
                current = _NO_FILE
            except OSError as exc:
                self._warn_once(
                    _os_problem(exc), "not using the token cache %s: cannot stat it (%s)",
                    self.path, _describe(exc),
                )
                return {}
            if current == signature:
                return tokens
        try:
            signature, tokens = self._read()
        except _Unusable as problem:
            signature, tokens = problem.signature, {}
            self._report(problem)
        self._state = (signature, tokens)
        return tokens

    def _report(self, problem: _Unusable) -> None:
        """One warning per bad version of the file (reads and writes share it)."""
        if problem.key[0] == "oserror":
            what = "tokens are not shared meanwhile"
        elif problem.reason in (_SYMLINK, _NOT_REGULAR):
            what = "tokens are not shared until it is removed"
        else:
            what = "it will be replaced on the next write"
        self._warn_once(
            problem.key, "ignoring the token cache %s: %s; %s", self.path, problem.reason, what
        )

    def _read(self) -> tuple[_Signature, dict[str, Token]]:
        self._check_directory()
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return _NO_FILE, {}
        except OSError as exc:
            raise _Unusable(_describe(exc), _NO_FILE, _os_problem(exc)) from None
        signature = _signature(st)
        if stat.S_ISLNK(st.st_mode):
            raise _Unusable(_SYMLINK, signature)
        if not stat.S_ISREG(st.st_mode):
            raise _Unusable(_NOT_REGULAR, signature)
        try:
            fd = os.open(self.path, _READ_FLAGS)
        except FileNotFoundError:
            return _NO_FILE, {}
        except OSError as exc:
            raise _Unusable(_describe(exc), signature) from None
        try:
            with os.fdopen(fd, "rb") as file:
                st = os.fstat(file.fileno())
                signature = _signature(st)  # what we actually read, should it have changed
                if not stat.S_ISREG(st.st_mode):
                    raise _Unusable(_NOT_REGULAR, signature)
                if st.st_size > MAX_FILE_SIZE:
                    raise _Unusable(
                        f"it is larger than {MAX_FILE_SIZE} bytes", signature, foreign=True
                    )
                raw = file.read(MAX_FILE_SIZE + 1)
        except OSError as exc:
            raise _Unusable(_describe(exc), signature) from None
        return signature, self._parse(raw, signature)

    def _parse(self, raw: bytes, signature: _Signature) -> dict[str, Token]:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):  # [[[[...]]]] recurses
            # The message says nothing of the content: it may hold tokens.
            raise _Unusable(
                "it is not valid JSON (corrupt or truncated)", signature, foreign=True
            ) from None
        if (
            not isinstance(data, dict)
            or data.get("version") != FILE_FORMAT_VERSION
            or not isinstance(data.get("tokens"), dict)
        ):
            raise _Unusable(
                f"it is not in the version-{FILE_FORMAT_VERSION} token cache format",
                signature,
                foreign=True,
            )
        tokens: dict[str, Token] = {}
        bad = 0
        for key, value in data["tokens"].items():
            try:
                if not isinstance(value, dict):
                    raise TypeError
                tokens[key] = Token.from_dict(value)
            except (KeyError, TypeError, ValueError):
                bad += 1
        if bad:
            self._warn_once(
                (signature, "entries"),
                "ignoring %d unreadable entries in the token cache %s", bad, self.path,
            )
        return tokens

    # -- writing ----------------------------------------------------------------------------

    def _modify(self, change: Callable[[dict[str, Token]], bool]) -> None:
        """Re-read under the lock, apply ``change``, prune, write if anything changed."""
        with self._locked():
            tokens = dict(self._tokens())
            changed = change(tokens)
            now = self._clock()
            expired = [k for k, t in tokens.items() if t.expires_at is not None
                       and t.expires_at <= now]
            for key in expired:
                del tokens[key]
            if changed or expired:
                self._write(tokens, quiet=True)

    def _write(self, tokens: dict[str, Token], *, quiet: bool) -> None:
        """Replace the file atomically; ``quiet``: log a failure instead of raising it."""
        try:
            self._replace(tokens)
        except _Unusable as problem:
            if not quiet:
                raise OSError(f"{self.path}: {problem.reason}") from None
            self._report(problem)
        except OSError as exc:
            if not quiet:
                raise
            self._warn_once(
                _os_problem(exc),
                "cannot write the token cache %s (%s); tokens are not shared meanwhile",
                self.path, _describe(exc),
            )

    def _replace(self, tokens: dict[str, Token]) -> None:
        directory = self.path.parent
        self._ensure_directory()
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            pass
        else:
            # Never replace (nor write through) a link or a directory someone put there.
            if stat.S_ISLNK(st.st_mode):
                raise _Unusable(_SYMLINK, _signature(st))
            if not stat.S_ISREG(st.st_mode):
                raise _Unusable(_NOT_REGULAR, _signature(st))
        payload = json.dumps(
            {
                "version": FILE_FORMAT_VERSION,
                "tokens": {key: token.to_dict() for key, token in sorted(tokens.items())},
            },
            separators=(",", ":"),
        ).encode("utf-8")
        # mkstemp: O_EXCL (never follows a planted link), mode 0600 whatever the umask.
        fd, temp = tempfile.mkstemp(prefix=".tokens-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(payload)
                file.flush()
                os.fsync(file.fileno())
                inode = os.fstat(file.fileno()).st_ino
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        signature: Optional[_Signature] = None  # unknown: the next get re-reads
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if st.st_ino == inode:
                signature = _signature(st)
        self._state = (signature, tokens)

    def _ensure_directory(self) -> None:
        directory = self.path.parent
        if not directory.is_dir():
            _make_private_directories(directory)
            self._directory_checked = True  # ours, 0700
        else:
            self._check_directory()

    def _check_directory(self) -> None:
        """Once per instance, if it exists: tighten our default directory to 0700, or warn
        about a directory the caller named where others can replace the file."""
        if self._directory_checked:
            return
        directory = self.path.parent
        try:
            st = os.stat(directory)
        except OSError:
            return  # missing (created 0700 on the first write) or unusable (reported then)
        self._directory_checked = True
        if not stat.S_ISDIR(st.st_mode) or os.name != "posix":
            return  # Windows: the profile's ACLs, not mode bits, protect the file
        if self._tighten:
            with contextlib.suppress(OSError):
                st = os.lstat(directory)
                if (
                    stat.S_ISDIR(st.st_mode)
                    and stat.S_IMODE(st.st_mode) & 0o077
                    and st.st_uid == os.getuid()
                ):
                    os.chmod(directory, 0o700)
        elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            # Not ours to chmod; with the sticky bit (/tmp) others cannot rename over it.
            log.warning(
                "the token cache directory %s is writable by others (mode %03o): they can "
                "replace the token file there; use a private directory (mode 0700) for the "
                "token cache",
                directory, stat.S_IMODE(st.st_mode),
            )

    # -- locking ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Thread lock, then file lock, each waited for at most ``lock_timeout`` in total.

        Re-entrant per thread (``set`` runs inside ``lock``); if the outer level went on
        without the lock, inner levels do not wait again.
        """
        depth = getattr(self._held, "depth", 0)
        if depth:
            self._held.depth = depth + 1
            try:
                yield
            finally:
                self._held.depth = depth
            return
        deadline = time.monotonic() + self.lock_timeout
        # These very objects are released: a fork() inside the block replaces them.
        thread_lock, file_lock = self._thread_lock, self._file_lock
        has_thread_lock = thread_lock.acquire(timeout=self.lock_timeout)
        has_file_lock = False
        try:
            if has_thread_lock:
                has_file_lock = self._acquire_file_lock(file_lock, deadline)
            else:
                log.warning(
                    "waited %.1f s for another thread holding the token cache %s; going on "
                    "without the lock (a token request may be repeated)",
                    self.lock_timeout, self.path,
                )
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0
        finally:
            # After a fork() inside the block, the file lock is the parent's (see
            # _after_fork_in_child): this child never unlocks it.
            if has_file_lock and file_lock is self._file_lock:
                file_lock.release()
            if has_thread_lock:
                thread_lock.release()

    def _acquire_file_lock(self, file_lock: Any, deadline: float) -> bool:
        try:
            self._ensure_directory()
            self._check_lock_file()
            file_lock.acquire(timeout=max(deadline - time.monotonic(), 0.0))
        except self._timeout_error:
            log.warning(
                "waited %.1f s for another process holding %s; going on without the lock "
                "(a token request may be repeated)",
                self.lock_timeout, self._lock_path,
            )
            return False
        except _Unusable as problem:
            self._warn_once(
                problem.key, "not locking %s: %s; going on without the lock",
                self._lock_path, problem.reason,
            )
            return False
        except OSError as exc:
            self._warn_once(
                _os_problem(exc),
                "cannot lock %s (%s); going on without the lock",
                self._lock_path, _describe(exc),
            )
            return False
        return True

    def _check_lock_file(self) -> None:
        """Refuse a link or non-file at the lock path: filelock opens it with O_TRUNC, and
        releases before 3.20.1 follow a link (CVE-2025-68146), truncating its target."""
        try:
            st = os.lstat(self._lock_path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise _Unusable(_SYMLINK, _signature(st), ("lock", _SYMLINK))
        if not stat.S_ISREG(st.st_mode):
            raise _Unusable(_NOT_REGULAR, _signature(st), ("lock", _NOT_REGULAR))

    # -- helpers ----------------------------------------------------------------------------

    def _warn_once(self, problem: tuple[object, ...], message: str, *args: object) -> None:
        """Log ``message`` unless this problem (with this version of the file) was reported."""
        if problem in self._warned:
            return
        if len(self._warned) >= _MAX_PROBLEMS:
            self._warned.clear()
        self._warned.add(problem)
        log.warning(message, *args)

    def __repr__(self) -> str:
        return f"FileTokenCache(path={os.fspath(self.path)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickles as its path: a copy in another process shares the same file.
        clock = None if self._clock is time.time else self._clock
        return (_rebuild, (os.fspath(self.path), self.lock_timeout, clock))


def _rebuild(
    path: str, lock_timeout: float, clock: Optional[Callable[[], float]]
) -> FileTokenCache:
    return FileTokenCache(path, lock_timeout=lock_timeout, clock=clock or time.time)


def _checked_path(path: object) -> Union[str, os.PathLike[str]]:
    """The caller's ``path`` if it can name a file, else ConfigurationError."""
    example = "for example /var/cache/myjob/tokens.json, or None for the default"
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigurationError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise ConfigurationError(f"path must be a str path, got {type(text).__name__}; {example}")
    if not text:
        raise ConfigurationError(f"path must name the cache file, got an empty string; {example}")
    if "\0" in text:
        raise ConfigurationError(
            f"path must not contain a NUL character (\\0), got {text!r}; {example}"
        )
    try:
        os.fsencode(text)
    except UnicodeEncodeError:  # a lone surrogate ("\ud800"): every os call would fail
        raise ConfigurationError(
            f"path has a character the file system cannot encode, got {text!r:.200}; {example}"
        ) from None
    if text.endswith(("/", os.sep)):
        raise ConfigurationError(
            f"path must name the cache file, not a directory, got {text!r}: add a file name, "
            f"{example}"
        )
    return path


def _make_private_directories(directory: Path) -> None:
    """``mkdir -p`` where every level created is 0700 (``Path.mkdir(parents=True)`` gives the
    parents the umask's default mode); levels that already exist are left as they are."""
    missing: list[Path] = []
    while not directory.is_dir() and directory.parent != directory:
        missing.append(directory)
        directory = directory.parent
    for level in reversed(missing):
        try:
            os.mkdir(level, 0o700)
        except FileExistsError:
            continue  # made meanwhile by another process; a file there fails the next step
        with contextlib.suppress(OSError):
            os.chmod(level, 0o700)  # mkdir's mode is filtered by the umask


def _os_problem(exc: OSError) -> tuple[object, ...]:
    """Warn-once key of an OS error: one warning whether stat, lock or write met it first."""
    return ("oserror", exc.errno, type(exc))


def _describe(exc: OSError) -> str:
    """An OSError's reason without repeating the path; never file content."""
    return exc.strerror or type(exc).__name__
