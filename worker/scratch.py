"""Temporary files and directories named after the process that owns them, so that a later
process removes what a killed one left behind (a SIGKILL leaves no chance to clean up)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from pathlib import Path

# Another host's temporaries (a pod's, on a shared volume) this old belong to a dead process:
# no output takes an hour to write.
STALE_SECONDS = 3600.0
_SEPARATOR = "~"  # in no host name


def owner_prefix() -> str:
    """The start of the name of a temporary this process makes: its host and process id."""
    return f"{socket.gethostname()}{_SEPARATOR}{os.getpid()}{_SEPARATOR}"


def remove_stale(directory: Path) -> None:
    """Remove the temporaries in `directory` whose process is gone."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    host = socket.gethostname()
    for entry in entries:
        owner_host, _, rest = entry.name.partition(_SEPARATOR)
        pid, _, _ = rest.partition(_SEPARATOR)
        if not pid.isdigit():
            continue  # not a temporary of the kit's
        if owner_host == host:
            stale = not _alive(int(pid))
        else:
            try:
                modified = entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:  # another process removed it meanwhile
                continue
            stale = time.time() - modified > STALE_SECONDS
        if stale:
            remove_path(Path(entry.path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_path(path: Path) -> None:
    """Remove the file, link or directory tree at `path`, if it is still there."""
    # Another process may be removing the same leftover: what is gone is fine.
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
