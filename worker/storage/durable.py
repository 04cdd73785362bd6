"""Making local files durable: each on its own, or many at once (a group commit).

A file is written under a temporary name and moved into place, so a reader sees the old file or
the new. Alone, it is flushed before the move and its directory after. In a group, many files
are written first, then one flush of the file system makes them all durable, they are moved,
and one more flush makes the moves durable: two flushes for any number of files, where Linux
has syncfs; elsewhere each file and each directory once.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

# Resolved once: syncfs(2) flushes one file system, not every one as sync(2) does.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def fsync_path(path: Path | str) -> None:
    """Flush a file's content, or a directory's entries (a file moved in, a link made)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Group:
    """Files written under temporary names on the file system of `root`, each moved to its
    name, durably, at the next `commit`; until then none of them is there, and a crash loses
    them whole."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._moves: list[tuple[str, Path]] = []  # (temporary, its name)

    def add(self, temporary: str, path: Path) -> None:
        """Move `temporary`, written and not flushed, to `path` at the next commit."""
        self._moves.append((temporary, path))

    def commit(self) -> None:
        """Flush what was added, move it into place, and flush the moves. Raises OSError."""
        if not self._moves:
            return
        moves, self._moves = self._moves, []
        self._flush([temporary for temporary, _ in moves])
        for temporary, path in moves:
            os.replace(temporary, path)
        self._flush({str(path.parent) for _, path in moves})

    def _flush(self, paths: list[str] | set[str]) -> None:
        if _LIBC is not None:
            fd = os.open(self.root, os.O_RDONLY)
            try:
                if _LIBC.syncfs(fd) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, os.strerror(error))
            finally:
                os.close(fd)
            return
        for path in paths:
            fsync_path(path)
