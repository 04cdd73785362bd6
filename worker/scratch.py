"""Temporary files and directories that a later process removes once their owner has ended (a
SIGKILL leaves no chance to clean up), and never before.

What proves an owner alive is a lock it holds: in each directory it makes temporaries in, a
process first takes an exclusive `flock` on a file of its own (`<prefix>lock`) and keeps it
until it ends, when the kernel lets go of it however it ended. Every temporary of the process
starts with the same prefix. Neither a process id nor a clock proves anything: a process in
another PID namespace sees none of the owner's, and two hosts sharing a volume keep their own
time.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import secrets
import shutil
import socket
import threading
from collections import defaultdict
from pathlib import Path

_SEPARATOR = "~"  # in no host name
_LOCK = "lock"


class _Owner:
    """This process's prefix and the locks it holds, by directory; made anew in a fork."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        # The host and pid tell a person whose it is; the token makes it unique where two
        # processes share both (two containers' entry points, PID 1 on one host name).
        self.prefix = _SEPARATOR.join(
            [socket.gethostname(), str(self.pid), secrets.token_hex(4), ""]
        )
        self.locks: dict[str, int] = {}


_owner: _Owner | None = None
# Two threads of a process taking its lock at once would each open the file, and the second
# wait for ever on the first's lock: they take turns.
_turns = threading.Lock()


def owner_prefix(directory: Path) -> str:
    """The start of the name of every temporary this process makes in `directory` (made if
    missing); from the first call on, this process holds the lock that says they are its."""
    global _owner
    key = os.fspath(directory)
    with _turns:
        if _owner is None or _owner.pid != os.getpid():
            _owner = _Owner()  # a forked child's temporaries are its own, not its parent's
            atexit.register(release)
        lock = directory / f"{_owner.prefix}{_LOCK}"
        held = _owner.locks.get(key)
        if held is None or not _still_at(lock, held):  # the directory was removed meanwhile
            if held is not None:
                os.close(held)
            _owner.locks[key] = _hold(lock)
        return _owner.prefix


def _new_turns() -> None:
    global _turns
    _turns = threading.Lock()  # another thread may have held it as the process forked


os.register_at_fork(after_in_child=_new_turns)


def _still_at(path: Path, descriptor: int) -> bool:
    """Whether the file open as `descriptor` is still the one at `path`."""
    try:
        return os.stat(path).st_ino == os.fstat(descriptor).st_ino
    except FileNotFoundError:
        return False


def _hold(path: Path) -> int:
    """An open descriptor of the file `path` with an exclusive lock on it, for ever. Another
    process that found the file unlocked (before the lock was taken) may have removed it:
    then it is made again."""
    while True:
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        if _still_at(path, descriptor):
            return descriptor
        os.close(descriptor)


def release() -> None:
    """Remove what is left of this process's temporaries (a working directory kept between
    items), and then its locks: called as it ends."""
    with _turns:
        if _owner is None or _owner.pid != os.getpid():
            return
        for directory, descriptor in _owner.locks.items():
            names = [name for name in _listed(Path(directory)) if name.startswith(_owner.prefix)]
            _remove_owned(Path(directory), _owner.prefix, names)
            os.close(descriptor)
        _owner.locks.clear()


def _listed(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []


def remove_stale(directory: Path) -> None:
    """Remove the temporaries in `directory` whose owner has ended: the lock of their prefix
    can be taken, or is gone (it is made before them and removed after them)."""
    entries = _listed(directory)
    own = _owner.prefix if _owner is not None and _owner.pid == os.getpid() else None
    by_owner: defaultdict[str, list[str]] = defaultdict(list)
    for name in entries:
        parts = name.split(_SEPARATOR, 3)
        if len(parts) == 4 and parts[1].isdigit():  # a temporary of the kit's
            by_owner[_SEPARATOR.join([*parts[:3], ""])].append(name)
    for prefix, names in by_owner.items():
        if prefix != own:
            _remove_if_ended(directory, prefix, names)


def _remove_if_ended(directory: Path, prefix: str, names: list[str]) -> None:
    lock = directory / f"{prefix}{_LOCK}"
    try:
        descriptor = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        descriptor = None
    except OSError:  # another user's, say: nothing proves it ended
        return
    try:
        if descriptor is not None:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # its owner runs
        _remove_owned(directory, prefix, names)
    finally:
        if descriptor is not None:
            os.close(descriptor)


def _remove_owned(directory: Path, prefix: str, names: list[str]) -> None:
    """Remove the temporaries `names` of the owner of `prefix` in `directory`, its lock last."""
    lock = f"{prefix}{_LOCK}"
    for name in names:
        if name != lock:
            remove_path(directory / name)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(directory / lock)


def remove_path(path: Path) -> None:
    """Remove the file, link or directory tree at `path`, if it is still there."""
    # Another process may be removing the same leftover: what is gone is fine.
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
