"""What every store is: the Store protocol, and the table of backends.

A backend is one module with `location_problems(name, url, settings)`, which checks a URL
without touching the network or importing an SDK, and `open_location(url, settings, create,
on_wait)`.
Adding one (S3, say) is that module and one line in BACKENDS.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast
from urllib.parse import urlsplit

# URL scheme -> the module of its backend ("" is a plain directory).
BACKENDS = {
    "": "jobkit_worker.storage.local",
    "file": "jobkit_worker.storage.local",
    "az": "jobkit_worker.storage.azure",
}


Content = bytes | Path
"""What is stored as one name: bytes in memory, or a file, streamed from disk (its size
bounds no one's memory)."""


def content_size(content: Content) -> int:
    """How many bytes `content` is."""
    return len(content) if isinstance(content, bytes) else content.stat().st_size


def content_md5(content: Content) -> bytes:
    """The MD5 digest of `content`, a file read in chunks."""
    if isinstance(content, bytes):
        return hashlib.md5(content).digest()
    with content.open("rb") as file:
        return hashlib.file_digest(file, "md5").digest()


class StorageSettings(Protocol):
    """What a backend reads of the settings: where its credentials are."""

    @property
    def azure_connection_string(self) -> str: ...
    @property
    def azure_credentials_path(self) -> str: ...
    @property
    def azure_account(self) -> str: ...
    @property
    def azure_blob_endpoint(self) -> str: ...


@dataclass(frozen=True)
class Entry:
    """A stored file as a listing shows it, unread."""

    size: int
    version: str  # changes whenever the content may have: its size and time, or a blob's ETag
    md5: bytes | None  # the content's MD5 where the store keeps it (Azure does), else None


class Store(Protocol):
    """A place holding items' files by name. Writes are atomic: the old content or the new."""

    def check(self, writable: bool = False) -> None:
        """Raise ConfigError unless the store can be used (reachable, allowed, existing) and,
        with `writable`, written to: a store that refuses writes is found before any message is
        taken, not by every item failing.

        A store opened with `create` first makes its directory or container when missing.
        """

    def read(self, name: str) -> bytes:
        """The bytes of `name`; InputError when it does not exist, StorageError when unreadable."""

    def read_listed(self, name: str) -> tuple[bytes, Entry]:
        """The bytes of `name` and the entry a listing shows for just those bytes; as `read`."""

    def size(self, name: str) -> int:
        """The size of `name` in bytes, unread; InputError when it does not exist."""

    def write(self, name: str, content: Content) -> str:
        """Store `content` as `name`, replacing it whole (a file is streamed, never read whole
        into memory); returns its version (as Entry has it). StorageError when that fails."""

    def group_writes(self) -> None:
        """From now on, writes may take effect together at each `commit` (one flush to disk
        for many files, where that is cheaper); a write not yet committed is not there, and a
        crash loses it whole."""

    def commit(self) -> None:
        """Put every write since the last commit in place, durably. StorageError when that
        fails."""

    def create(self, name: str, data: bytes) -> bytes:
        """Store `data` as `name` unless something is stored there already; returns what is
        stored then: `data`, or what was there. Of two creating one name at once, one wins."""

    def list(self, suffix: str = "") -> list[str]:
        """Names below the store's root ending with `suffix`, sorted; hidden ones left out."""

    def unlisted(self) -> dict[str, str]:
        """What `list` leaves out below the root that a user may take for files, with why."""

    def inventory(self) -> dict[str, Entry]:
        """Every file `list` names, with its size and version, in one pass."""

    def digest(self, name: str) -> bytes | None:
        """The MD5 of what is stored as `name`, or None when nothing is."""

    def hash(self, name: str, algorithm: str) -> bytes | None:
        """The digest (a hashlib algorithm's) of the bytes stored as `name`, computed from them
        now, or None when nothing is stored there."""

    def lock(self, name: str, on_wait: Callable[[], None]) -> AbstractContextManager[None]:
        """Hold the lock `name` for the block, waiting (after calling `on_wait` once) while
        another process holds it; a holder that dies releases it."""


class _Backend(Protocol):
    def location_problems(self, name: str, url: str, settings: StorageSettings) -> list[str]: ...

    def open_location(
        self,
        url: str,
        settings: StorageSettings,
        create: bool,
        on_wait: Callable[[str], None] | None,
    ) -> Store: ...


def location_problems(name: str, url: str, settings: StorageSettings) -> list[str]:
    """What is wrong with `url`, the value of setting `name`, before anything is opened."""
    scheme = urlsplit(url).scheme
    if scheme not in BACKENDS:
        schemes = ", ".join(f"{known}://" for known in BACKENDS if known)
        return [
            f"{name} {url!r} has an unsupported scheme {scheme!r} (use a directory or one of "
            f"{schemes})"
        ]
    return _backend(scheme).location_problems(name, url, settings)


def open_store(
    url: str,
    settings: StorageSettings,
    *,
    create: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> Store:
    """The store behind `url`: a directory, a `file://` URL or another backend's URL.

    With `create`, its directory or container is made when it is checked: the operator's tools
    prepare locations, a worker never does (a missing one is a configuration error). `on_wait`
    hears, as well as the log, when the store waits to retry a request (a throttled service).
    """
    return _backend(urlsplit(url).scheme).open_location(url, settings, create, on_wait)


def _backend(scheme: str) -> _Backend:
    # Imported when first used: a worker on local directories never loads the Azure SDK.
    return cast(_Backend, importlib.import_module(BACKENDS[scheme]))
