"""Local directories as a store: `data/output` or `file:///data/output`."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from worker.errors import ConfigError, InputError, StorageError
from worker.scratch import owner_prefix, remove_stale
from worker.storage.base import check_name

if TYPE_CHECKING:
    from worker.settings import Settings

TEMPORARY_DIR = ".jobkit/tmp"  # below the root: on its file system, so a rename moves a file in


def location_problems(name: str, url: str, settings: Settings) -> list[str]:
    """Any path is a location; whether it exists is checked when the store is."""
    return []


def open_location(url: str, settings: Settings, create: bool) -> LocalStore:
    """The directory a path or a `file://` URL names."""
    parts = urlsplit(url)
    return LocalStore(Path(unquote(parts.path)) if parts.scheme == "file" else Path(url), create)


class LocalStore:
    """A directory holding items' files; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: Path, create: bool = False) -> None:
        self.root = root
        self.create = create

    def __str__(self) -> str:
        return str(self.root)

    @property
    def temporaries(self) -> Path:
        return self.root / TEMPORARY_DIR

    def check(self, writable: bool = False) -> None:
        """Raise ConfigError unless the root is a directory (made first with `create`) and, with
        `writable`, a file can be made in it; remove the temporary files of writes whose process
        was killed."""
        if self.create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"Cannot create the directory {self.root} ({exc.strerror})."
                ) from exc
        if not self.root.is_dir():
            raise ConfigError(f"{self.root} is not a directory; check INPUT_URL and OUTPUT_URL.")
        remove_stale(self.temporaries)
        if writable:
            try:
                self.temporaries.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=self.temporaries):
                    pass
            except OSError as exc:
                raise ConfigError(f"Cannot write to {self.root} ({exc.strerror}).") from exc

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
        """Store `data` as `name` atomically: readers see the old file or the new, never half.

        The file is written under TEMPORARY_DIR, named after this process, and then moved into
        place: a write cut short leaves it where `check` later removes it.
        """
        path = self.path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.temporaries.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=self.temporaries, prefix=owner_prefix())
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

    def digest(self, name: str) -> bytes | None:
        """The MD5 of the file `name`, or None when there is none."""
        path = self.path(name)
        if not path.is_file():
            return None
        with path.open("rb") as file:
            return hashlib.file_digest(file, "md5").digest()

    def list(self, suffix: str = "") -> list[str]:
        """Names of the files below the root that end with `suffix`, sorted; [] if no root."""
        if not self.root.is_dir():
            return []
        names = (path.relative_to(self.root) for path in self.root.rglob(f"*{suffix}"))
        return sorted(
            name.as_posix()
            for name in names
            if not any(part.startswith(".") for part in name.parts) and (self.root / name).is_file()
        )


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
