"""What every store is: the Store protocol, safe item names, and the table of backends.

A backend is one module with `location_problems(name, url, settings)`, which checks a URL
without touching the network or importing an SDK, and `open_location(url, settings, create)`.
Adding one (S3, say) is that module and one line in BACKENDS.
"""

from __future__ import annotations

import importlib
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Protocol, cast
from urllib.parse import urlsplit

from worker.errors import InputError

if TYPE_CHECKING:
    from worker.settings import Settings

# URL scheme -> the module of its backend ("" is a plain directory).
BACKENDS = {
    "": "worker.storage.local",
    "file": "worker.storage.local",
    "az": "worker.storage.azure",
}


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

    def size(self, name: str) -> int:
        """The size of `name` in bytes, unread; InputError when it does not exist."""

    def write(self, name: str, data: bytes) -> None:
        """Store `data` as `name`, replacing it whole; StorageError when that fails."""

    def list(self, suffix: str = "") -> list[str]:
        """Names below the store's root ending with `suffix`, sorted."""

    def digest(self, name: str) -> bytes | None:
        """The MD5 of what is stored as `name`, or None when nothing is."""


class _Backend(Protocol):
    def location_problems(self, name: str, url: str, settings: Settings) -> list[str]: ...

    def open_location(self, url: str, settings: Settings, create: bool) -> Store: ...


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


def location_problems(name: str, url: str, settings: Settings) -> list[str]:
    """What is wrong with `url`, the value of setting `name`, before anything is opened."""
    scheme = urlsplit(url).scheme
    if scheme not in BACKENDS:
        schemes = ", ".join(f"{known}://" for known in BACKENDS if known)
        return [
            f"{name} {url!r} has an unsupported scheme {scheme!r} (use a directory or one of "
            f"{schemes})"
        ]
    return _backend(scheme).location_problems(name, url, settings)


def open_store(url: str, settings: Settings, *, create: bool = False) -> Store:
    """The store behind `url`: a directory, a `file://` URL or another backend's URL.

    With `create`, its directory or container is made when it is checked: the operator's tools
    prepare locations, a worker never does (a missing one is a configuration error).
    """
    return _backend(urlsplit(url).scheme).open_location(url, settings, create)


def _backend(scheme: str) -> _Backend:
    # Imported when first used: a worker on local directories never loads the Azure SDK.
    return cast(_Backend, importlib.import_module(BACKENDS[scheme]))
