"""Where items' inputs are read and results written: local directories, with atomic writes."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from worker.errors import InputError, StorageError


def check_name(name: str) -> str:
    """Return `name` if it is a safe relative item name; raises InputError otherwise."""
    if not name or name.strip() != name:
        raise InputError(f"Item name {name!r} is empty or has surrounding white space.")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise InputError(f"Item name {name!r} contains control characters.")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        raise InputError(f"Item name {name!r} must be a relative path without '..'.")
    return name


class LocalStore:
    """A directory holding items' files; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __str__(self) -> str:
        return str(self.root)

    def path(self, name: str) -> Path:
        """The file behind `name`, after checking the name."""
        return self.root / check_name(name)

    def read(self, name: str) -> bytes:
        """The bytes of `name`; raises InputError when it does not exist."""
        path = self.path(name)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise InputError(f"{name}: no such file in {self.root}.") from exc
        except OSError as exc:
            raise StorageError(f"{name}: cannot read {path} ({exc.strerror}).") from exc

    def size(self, name: str) -> int:
        """The size of `name` in bytes, unread; raises InputError when it does not exist."""
        path = self.path(name)
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise InputError(f"{name}: no such file in {self.root}.") from exc
        except OSError as exc:
            raise StorageError(f"{name}: cannot read {path} ({exc.strerror}).") from exc
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{name}: no such file in {self.root}.")
        return info.st_size

    def write(self, name: str, data: bytes) -> None:
        """Store `data` as `name` atomically: readers see the old file or the new, never half."""
        path = self.path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.chmod(temporary, 0o644)
                os.replace(temporary, path)
            except BaseException:
                os.unlink(temporary)
                raise
            _fsync_directory(path.parent)
        except OSError as exc:
            raise StorageError(f"{name}: cannot write {path} ({exc.strerror}).") from exc

    def list(self, suffix: str = "") -> list[str]:
        """Names of the files below the root that end with `suffix`, sorted; [] if no root."""
        if not self.root.is_dir():
            return []
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob(f"*{suffix}")
            if path.is_file() and not path.name.startswith(".")
        )


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_store(url: str) -> LocalStore:
    """The store behind a directory path or `file://` URL."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStore(Path(unquote(parts.path)))
    return LocalStore(Path(url))
