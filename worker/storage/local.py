"""Local directories as a store: `data/output` or `file:///data/output`."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from jobkit_worker.errors import (
    ConfigError,
    InputError,
    JobkitError,
    StorageError,
    StoreUnavailable,
)
from jobkit_worker.names import KIT_DIR, check_name
from jobkit_worker.scratch import owner_prefix, remove_stale
from jobkit_worker.storage.base import Content, Entry
from jobkit_worker.storage.durable import Group, fsync_path

if TYPE_CHECKING:
    from jobkit_worker.storage.base import StorageSettings

TEMPORARY_DIR = f"{KIT_DIR}/tmp"  # below the root: on its file system, so a rename moves a file in


def location_problems(name: str, url: str, settings: StorageSettings) -> list[str]:
    """Any path is a location; whether it exists is checked when the store is."""
    return []


def open_location(
    url: str,
    settings: StorageSettings,
    create: bool,
    on_wait: Callable[[str], None] | None = None,
) -> LocalStore:
    """The directory a path or a `file://` URL names; a local disk is never retried."""
    parts = urlsplit(url)
    return LocalStore(Path(unquote(parts.path)) if parts.scheme == "file" else Path(url), create)


class LocalStore:
    """A directory holding items' files; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: Path, create: bool = False) -> None:
        self.root = root
        self.makes_root = create
        self._directories: dict[Path, bool] = {}  # directory -> whether it resolves inside
        self._group: Group | None = None  # with group_writes: writes not yet committed
        self._identity: tuple[int, int] | None = None  # the root's (device, inode) when checked
        self.temporaries = root / TEMPORARY_DIR
        self._sources: dict[bytes, str] = {}  # in a group: what `create` links from, by content

    def __str__(self) -> str:
        return str(self.root)

    def check(self, writable: bool = False) -> None:
        """Raise ConfigError unless the root is a directory (made first with `create`) and, with
        `writable`, a file can be made in it; remove the temporary files of writes whose process
        was killed."""
        if self.makes_root:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"Cannot create the directory {self.root} ({exc.strerror})."
                ) from exc
        if not self.root.is_dir():
            raise ConfigError(f"{self.root} is not a directory; check INPUT_URL and OUTPUT_URL.")
        self._identity = _identity(self.root)
        remove_stale(self.temporaries)
        if writable:
            try:
                owner_prefix(self.temporaries)  # its lock there is a file made
            except OSError as exc:
                raise ConfigError(f"Cannot write to {self.root} ({exc.strerror}).") from exc

    def path(self, name: str) -> Path:
        """The file behind `name`, after checking the name; InputError when it, or a directory
        on its way, is a symbolic link that leads outside the root."""
        path = self.root / check_name(name)
        if not self._inside(path):
            raise InputError(
                f"{name}: a symbolic link on its way leads outside {self.root}; links are "
                "followed only while they stay inside it."
            )
        return path

    def _inside(self, path: Path) -> bool:
        """True if `path`, followed through every link, is the root or below it. Directories
        are resolved once per store: a status over 100,000 items resolves a few."""
        if path.is_symlink():
            return self._below_root(os.path.realpath(path))
        if path.parent not in self._directories:
            self._directories[path.parent] = self._below_root(os.path.realpath(path.parent))
        return self._directories[path.parent]

    def _below_root(self, real: str) -> bool:
        root = os.path.realpath(self.root)
        return real == root or real.startswith(root.rstrip(os.sep) + os.sep)

    def read(self, name: str) -> bytes:
        """The bytes of `name`; raises InputError when it does not exist, StorageError when it
        changed while it was read (a file still being written: another try reads it whole)."""
        return self.read_listed(name)[0]

    def read_listed(self, name: str) -> tuple[bytes, Entry]:
        """The bytes of `name` and its size and version while they were read; as `read`."""
        path = self.path(name)
        try:
            before = path.stat()
            data = path.read_bytes()
            after = path.stat()
            if _version(before) != _version(after) or len(data) != after.st_size:
                raise StorageError(
                    f"{name}: the file changed while it was read (still being written?); "
                    "another try reads it again."
                )
            return data, Entry(after.st_size, _version(after), None)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise self._missing(name) from exc
        except OSError as exc:
            raise StorageError(f"{name}: cannot read {path} ({exc.strerror}).") from exc

    def _missing(self, name: str) -> JobkitError:
        """Why `name` is not there: missing (InputError) while the root is the directory it was
        when checked; else the location changed under this process (a mount that dropped leaves
        its mount point, another directory), which another try may outlive."""
        try:
            now: tuple[int, int] | None = _identity(self.root)
        except OSError:
            now = None
        if now is not None and self._identity in (None, now):
            return InputError(f"{name}: no such file in {self.root}.")
        return StoreUnavailable(
            f"{name}: not found, and {self.root} is no longer the directory it was when this "
            "worker started (a mount that dropped?); another try reads it once it is back."
        )

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

    def write(self, name: str, content: Content) -> str:
        """Store `content` as `name` atomically: readers see the old file or the new, never
        half. Returns its version.

        The file is written under TEMPORARY_DIR, named after this process, and then moved into
        place: a write cut short leaves it where `check` later removes it.
        """
        path = self.path(name)
        try:
            with self._written(name, path, content, flush=self._group is None) as temporary:
                if self._group is not None:
                    self._group.add(temporary, path)
                    return _version(os.stat(temporary))  # a move keeps its size and time
                os.replace(temporary, path)
            fsync_path(path.parent)
            return _version(path.stat())
        except OSError as exc:
            raise StorageError(f"{name}: cannot write {path} ({exc.strerror}).") from exc

    def group_writes(self) -> None:
        """From now on, writes take effect together at each `commit`: two flushes to disk for
        them all. Until then a write is not there, and a crash loses it whole."""
        self._group = Group(self.root)

    def commit(self) -> None:
        """Put every write since the last commit in place, durably (at once without
        group_writes)."""
        if self._group is not None:
            try:
                self._group.commit()
            except OSError as exc:
                target = exc.filename2 or exc.filename  # the name a file was moved to, if any
                if target is None or Path(target).parent == self.temporaries:
                    raise StorageError(f"cannot store in {self.root} ({exc.strerror}).") from exc
                name = Path(target).relative_to(self.root).as_posix()
                raise StorageError(f"{name}: cannot write {target} ({exc.strerror}).") from exc
            finally:
                self._drop_sources()

    def _drop_sources(self) -> None:
        """Remove the files `create` linked from in a group, once its commit is over."""
        for source in self._sources.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(source)
        self._sources.clear()

    def create(self, name: str, data: bytes) -> bytes:
        """Store `data` as `name` unless a file is there; returns what is there then.

        A hard link, unlike a rename, fails when the name is taken: one creator wins. In a
        group, one file holds each content created until the commit, linked to every name
        given it (an item's name, as the owner of each of its outputs): a link per name, not
        a new file.
        """
        path = self.path(name)
        try:
            source = self._sources.get(data)
            if source is None:
                with self._written(name, path, data, flush=self._group is None) as source:
                    if self._group is not None:
                        self._sources[data] = source
            elif path.parent != self.root:
                path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, path)
            except FileExistsError:
                return path.read_bytes()
            finally:
                if self._group is None:
                    os.unlink(source)
            if self._group is None:  # else the group's commit makes the link durable
                fsync_path(path.parent)
            return data
        except OSError as exc:
            raise StorageError(f"{name}: cannot create {path} ({exc.strerror}).") from exc

    @contextmanager
    def _written(
        self, name: str, path: Path, content: Content, flush: bool = True
    ) -> Iterator[str]:
        """A temporary file holding `content`, on disk if `flush`, for the block to move into
        place as `name` at `path`; removed if the block fails."""
        if not self.root.is_dir():  # deleted meanwhile: a worker never makes its location
            raise StorageError(f"{name}: the directory {self.root} is gone; cannot write there.")
        if path.parent != self.root:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            temporary = self._temporary(content)
        except FileNotFoundError:  # the first write here, or removed meanwhile
            self.temporaries.mkdir(parents=True, exist_ok=True)
            temporary = self._temporary(content)
        try:
            if flush:
                fsync_path(temporary)
            os.chmod(temporary, 0o644)  # as any file written, not mkstemp's 0600
            yield temporary
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    def _temporary(self, content: Content) -> str:
        """A new file below `temporaries` holding `content`. A file on the same file system
        (a program's output) is linked there: no copy, and no new file to make, which costs
        more than a small file's writing."""
        prefix = owner_prefix(self.temporaries)
        if isinstance(content, Path):
            temporary = str(self.temporaries / f"{prefix}{uuid.uuid4().hex}")
            try:
                os.link(content, temporary)
                return temporary
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM):  # another file system: copied
                    raise
        fd, temporary = tempfile.mkstemp(dir=self.temporaries, prefix=prefix)
        try:
            with os.fdopen(fd, "wb") as file:
                if isinstance(content, bytes):
                    file.write(content)
                else:
                    _copy(content, file.fileno())
        except BaseException:
            os.unlink(temporary)
            raise
        return temporary

    def digest(self, name: str) -> bytes | None:
        """The MD5 of the file `name`, or None when there is none."""
        return self.hash(name, "md5")

    def hash(self, name: str, algorithm: str) -> bytes | None:
        """The `algorithm` digest of the file `name`, read now; None when there is none."""
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            with path.open("rb") as file:
                return hashlib.file_digest(file, algorithm).digest()
        except OSError as exc:
            raise StorageError(f"{name}: cannot read {path} ({exc.strerror}).") from exc

    def list(self, suffix: str = "") -> list[str]:
        """Names of the files below the root that end with `suffix`, sorted; [] if no root."""
        return sorted(name for name, _ in self._scan({}) if name.endswith(suffix))

    def unlisted(self) -> dict[str, str]:
        """Links to directories (not followed) and what is not a file, below the root."""
        skipped: dict[str, str] = {}
        for _ in self._scan(skipped):
            pass
        return skipped

    def inventory(self) -> dict[str, Entry]:
        """Every file `list` names, with its size and version (no digests: they need reading)."""
        found = {}
        for name, entry in self._scan({}):
            info = entry.stat()
            found[name] = Entry(info.st_size, _version(info), None)
        return found

    def _scan(self, skipped: dict[str, str]) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """(name, entry) of each file below the root, hidden ones left out; puts what a user
        may take for a file and is not listed in `skipped`, with why."""
        pending = [""]
        while pending:
            prefix = pending.pop()
            try:
                entries = list(os.scandir(self.root / prefix))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                name = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    pending.append(name + "/")
                elif entry.is_dir():
                    skipped[name] = "a link to a directory, which is not followed"
                elif entry.is_file():
                    if entry.is_symlink() and not self._inside(Path(entry.path)):
                        skipped[name] = "a link to outside the location, which is not read"
                    else:
                        yield name, entry
                else:
                    skipped[name] = "not a regular file"

    @contextmanager
    def lock(self, name: str, on_wait: Callable[[], None]) -> Iterator[None]:
        """Hold an exclusive lock on the file `.jobkit/locks/<name>` for the block; the kernel
        releases it when the holder dies."""
        path = self.root / KIT_DIR / "locks" / check_name(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file = path.open("a")
        except OSError as exc:
            raise StorageError(f"Cannot open the lock {path} ({exc.strerror}).") from exc
        with file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                on_wait()
                fcntl.flock(file, fcntl.LOCK_EX)
            yield


def _copy(source: Path, target: int) -> None:
    """Copy the file `source` to the open descriptor `target` in the kernel, never holding it
    in memory."""
    with source.open("rb") as file:
        size, offset = os.fstat(file.fileno()).st_size, 0
        while offset < size:
            sent = os.sendfile(target, file.fileno(), offset, size - offset)
            if sent == 0:  # it shrank meanwhile: what is there is copied
                break
            offset += sent


def _identity(root: Path) -> tuple[int, int]:
    info = root.stat()
    return info.st_dev, info.st_ino


def _version(info: os.stat_result) -> str:
    return f"{info.st_size}:{info.st_mtime_ns}"
