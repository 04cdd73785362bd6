"""Azure Blob Storage as a store: `az://container/prefix`, with the real azure-storage-blob SDK."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import RetryPolicy
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobLeaseClient,
    BlobServiceClient,
    ContainerClient,
    ContentSettings,
    LocationMode,
)

from jobkit_worker.errors import ConfigError, InputError, StorageError, StoreUnavailable
from jobkit_worker.names import KIT_DIR, check_name, is_hidden
from jobkit_worker.storage.base import Content, Entry, content_md5

if TYPE_CHECKING:
    from jobkit_worker.storage.base import StorageSettings

log = logging.getLogger(__name__)
# The SDK logs every request at INFO; the kit reports failures itself.
logging.getLogger("azure").setLevel(logging.WARNING)

# One Put Blob request up to this size: the blob appears whole or not at all.
_SINGLE_PUT_BYTES = 256 * 1024 * 1024
# A file is uploaded in blocks of this size, committed together: as whole as one request, and
# no more than a block in memory.
_BLOCK_BYTES = 8 * 1024 * 1024
WRITE_PROBE = f"{KIT_DIR}/writable"  # hidden, as a local store's temporaries are: never listed
_LEASE_SECONDS = 30  # a lock's lease, renewed while held (Azure allows 15 to 60)
# Each request is retried up to _RETRIES times on 408, 429, 500, 502, 503, 504 or a dropped
# connection: after the Retry-After the service asks for, up to _RETRY_AFTER_MAX_SECONDS, or else
# after a pause doubling from _BACKOFF_SECONDS to _BACKOFF_MAX_SECONDS. The storage SDK's own
# policy retries no 429, ignores Retry-After and pauses 15 s or more.
_RETRIES = 6
_BACKOFF_SECONDS = 0.5
_BACKOFF_MAX_SECONDS = 8
_RETRY_AFTER_MAX_SECONDS = 30.0
_BUSY = {408, 429, 500, 502, 503, 504}  # what the service answers when it cannot serve for now
_CONTAINER_NAME = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")


def location_problems(name: str, url: str, settings: StorageSettings) -> list[str]:
    """What is wrong with `az://container/prefix` as a location, before any request."""
    problems = []
    if not _CONTAINER_NAME.fullmatch(urlsplit(url).netloc):
        problems.append(
            f"{name} {url!r} does not name a valid container (3-63 lowercase letters, "
            "digits and single hyphens): use az://container/prefix"
        )
    credentials = (
        settings.azure_connection_string,
        settings.azure_credentials_path,
        settings.azure_account,
    )
    if not any(credentials):
        problems.append(
            f"{name} is {url!r} but none of AZURE_STORAGE_CONNECTION_STRING, "
            "AZURE_CREDENTIALS_PATH or AZURE_STORAGE_ACCOUNT is set"
        )
    return problems


class BlobStore:
    """Blobs under `prefix` in one container; each write is one upload that replaces the blob."""

    def __init__(self, container: ContainerClient, prefix: str, create: bool = False) -> None:
        self.container = container
        self.prefix = prefix.strip("/")
        self.makes_root = create

    def __str__(self) -> str:
        path = f"{self.container.container_name}/{self.prefix}".rstrip("/")
        return f"az://{path} (account {self.container.account_name})"

    def _blob(self, name: str) -> str:
        check_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def check(self, writable: bool = False) -> None:
        """Raise ConfigError naming the account and container unless the container is usable
        and, with `writable`, takes a blob (an empty WRITE_PROBE, written again each time)."""
        with self._translated("check", config=True):
            if self.makes_root and not self.container.exists():
                self.container.create_container()
            self.container.get_container_properties()
            if writable:
                self.container.upload_blob(self._blob(WRITE_PROBE), b"", overwrite=True)

    def read(self, name: str) -> bytes:
        """The blob's bytes; InputError when there is no such blob."""
        return self.read_listed(name)[0]

    def read_listed(self, name: str) -> tuple[bytes, Entry]:
        """The blob's bytes, with the size, ETag and MD5 of the version downloaded."""
        with self._translated(name):
            download = self.container.download_blob(self._blob(name))
            data = bytes(download.readall())
        md5 = download.properties.content_settings.content_md5
        return data, Entry(len(data), _etag(download.properties.etag), bytes(md5) if md5 else None)

    def hash(self, name: str, algorithm: str) -> bytes | None:
        """The `algorithm` digest of the blob's bytes, downloaded now in chunks; None when there
        is no such blob."""
        digest = hashlib.new(algorithm)
        try:
            with self._translated(name):
                for chunk in self.container.download_blob(self._blob(name)).chunks():
                    digest.update(chunk)
        except InputError:
            return None
        return digest.digest()

    def size(self, name: str) -> int:
        """The blob's size in bytes, unread; InputError when there is no such blob."""
        with self._translated(name):
            return int(self.container.get_blob_client(self._blob(name)).get_blob_properties().size)

    def write(self, name: str, content: Content) -> str:
        """Upload `content` as one blob, replacing any earlier one; returns its ETag. A file
        larger than a block goes in blocks committed together: the blob appears whole or not
        at all either way."""
        with self._translated(name):
            blob = self.container.get_blob_client(self._blob(name))
            if isinstance(content, Path) and content.stat().st_size > _BLOCK_BYTES:
                written = _upload_blocks(blob, content)
            else:
                data = content if isinstance(content, bytes) else content.read_bytes()
                written = blob.upload_blob(data, overwrite=True, content_settings=_content(data))
        return _etag(written["etag"])

    def group_writes(self) -> None:
        """Nothing to group: each upload is in place, durably, when it returns."""

    def commit(self) -> None:
        """Nothing to do: each upload was in place, durably, when it returned."""

    def create(self, name: str, data: bytes) -> bytes:
        """Upload `data` as a new blob unless one is there; returns what is there then."""
        try:
            with self._translated(name):
                self.container.upload_blob(
                    self._blob(name), data, overwrite=False, content_settings=_content(data)
                )
        except _Exists:
            return self.read(name)
        return data

    def list(self, suffix: str = "") -> list[str]:
        """Blob names below the prefix ending with `suffix`, relative to the prefix, sorted."""
        with self._translated("list"):
            names = list(self.container.list_blob_names(name_starts_with=self._start or None))
        return sorted(name for name in self._visible(names) if name.endswith(suffix))

    def unlisted(self) -> dict[str, str]:
        """Nothing: every blob but the hidden ones is listed."""
        return {}

    def inventory(self) -> dict[str, Entry]:
        """Every blob `list` names, with its size, ETag and the MD5 Azure keeps for it."""
        with self._translated("list"):
            blobs = {blob.name: blob for blob in self.container.list_blobs(self._start or None)}
        found = {}
        for name in self._visible(blobs):
            blob = blobs[self._start + name]
            md5 = blob.content_settings.content_md5
            found[name] = Entry(int(blob.size), _etag(blob.etag), bytes(md5) if md5 else None)
        return found

    @property
    def _start(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def _visible(self, names: Iterable[str]) -> Iterator[str]:
        """The names relative to the prefix, hidden ones left out."""
        for name in names:
            relative = name[len(self._start) :]
            if not is_hidden(relative):
                yield relative

    @contextmanager
    def lock(self, name: str, on_wait: Callable[[], None]) -> Iterator[None]:
        """Hold a lease on the blob `.jobkit/locks/<name>` for the block, renewed while it
        runs; a holder that dies lets it lapse within _LEASE_SECONDS."""
        blob = self.container.get_blob_client(self._blob(f"{KIT_DIR}/locks/{name}"))
        with contextlib.suppress(_Exists), self._translated(name):
            blob.upload_blob(b"", overwrite=False)
        lease = BlobLeaseClient(blob)
        waited = False
        while True:
            try:
                with self._translated(name):
                    lease.acquire(lease_duration=_LEASE_SECONDS)
                break
            except _Exists:
                if not waited:
                    on_wait()
                    waited = True
                time.sleep(1.0)
        stop = threading.Event()
        renewer = threading.Thread(target=_renew, args=(lease, stop), daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            with contextlib.suppress(AzureError):
                lease.release()

    def digest(self, name: str) -> bytes | None:
        """The Content-MD5 the blob was stored with, or None when there is no such blob."""
        try:
            with self._translated(name):
                properties = self.container.get_blob_client(self._blob(name)).get_blob_properties()
        except InputError:
            return None
        md5 = properties.content_settings.content_md5
        return bytes(md5) if md5 else None

    @contextmanager
    def _translated(self, name: str, config: bool = False) -> Iterator[None]:
        """Turn the SDK's errors into the kit's, naming account and container, never the key."""
        container, account = self.container.container_name, self.container.account_name
        where = f"container {container!r} of account {account!r}"
        try:
            yield
        except ResourceExistsError as exc:
            raise _Exists(f"{name}: already in {self}.") from exc
        except ResourceNotFoundError as exc:
            if config or getattr(exc, "error_code", None) == "ContainerNotFound":
                raise ConfigError(f"There is no {where}; create it or fix the az:// URL.") from exc
            raise InputError(f"{name}: no such blob in {self}.") from exc
        except ClientAuthenticationError as exc:
            raise ConfigError(f"Azure refused the credentials for {where}; check the key.") from exc
        except HttpResponseError as exc:
            if exc.status_code == 409:  # a lease held by another process
                raise _Exists(f"{name}: leased by another process.") from exc
            if exc.status_code == 403:
                code = getattr(exc, "error_code", "")
                raise ConfigError(
                    f"Azure refused access to {where} ({code}, for {name}); check the key, the "
                    "SAS token's permissions or the identity's role."
                ) from exc
            if exc.status_code in _BUSY:
                raise StoreUnavailable(
                    f"{name}: Azure answered {exc.status_code} for {where}, still after "
                    f"{_RETRIES} retries."
                ) from exc
            raise StorageError(f"{name}: Azure answered {exc.status_code} for {where}.") from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            unreachable = f"Cannot reach the blob endpoint of {where} ({_first_line(exc)})."
            raise (ConfigError if config else StoreUnavailable)(unreachable) from exc
        except AzureError as exc:
            raise StorageError(f"{name}: Azure failed for {where} ({_first_line(exc)}).") from exc


class _Exists(StorageError):
    """The blob is there already, or leased by another process."""


def _etag(etag: object) -> str:
    """An ETag as one spelling: uploads answer it quoted, listings bare."""
    return str(etag).strip('"')


def _content(content: Content) -> ContentSettings:
    return ContentSettings(content_type="text/csv", content_md5=bytearray(content_md5(content)))


def _upload_blocks(blob: BlobClient, path: Path) -> dict[str, Any]:
    """Upload the file `path` a block at a time, then commit the blocks as the blob."""
    prefix = uuid.uuid4().hex  # a writer's blocks are its own, even beside another's
    blocks: list[BlobBlock] = []
    with path.open("rb") as file:
        while chunk := file.read(_BLOCK_BYTES):
            block = BlobBlock(f"{prefix}{len(blocks):08d}")
            blob.stage_block(block.id, chunk)
            blocks.append(block)
    return blob.commit_block_list(blocks, content_settings=_content(path))


def _renew(lease: BlobLeaseClient, stop: threading.Event) -> None:
    """Renew `lease` until `stop` is set; a failed renewal is tried again at the next turn."""
    while not stop.wait(_LEASE_SECONDS / 3):
        with contextlib.suppress(AzureError):
            lease.renew()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


class _Retry(RetryPolicy[Any, Any]):
    """azure-core's retry policy, which honours Retry-After, bounded and telling each retry."""

    def __init__(self, on_wait: Callable[[str], None] | None) -> None:
        super().__init__(
            retry_total=_RETRIES,
            retry_connect=_RETRIES,
            retry_read=_RETRIES,
            retry_status=_RETRIES,
            retry_backoff_factor=_BACKOFF_SECONDS,
            retry_backoff_max=_BACKOFF_MAX_SECONDS,
        )
        self._on_wait = on_wait

    def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
        # What the storage pipeline gives its own retry policy, for a secondary endpoint the
        # kit does not use; left in, it would reach the HTTP transport.
        for storage_option in ("hosts", "location_mode", "retry_to_secondary", "retry_hook"):
            options.pop(storage_option, None)
        return super().configure_retries(options)

    def send(self, request: Any) -> Any:
        response = super().send(request)
        # Which endpoint answered, as the storage SDK's responses say: always the primary.
        response.http_response.location_mode = LocationMode.PRIMARY
        return response

    def get_retry_after(self, response: Any) -> float | None:
        after = super().get_retry_after(response)
        return None if after is None else min(after, _RETRY_AFTER_MAX_SECONDS)

    def sleep(self, settings: dict[str, Any], transport: Any, response: Any = None) -> None:
        pause = (self.get_retry_after(response) if response else None) or self.get_backoff_time(
            settings
        )
        last = settings["history"][-1]
        if last.http_response is not None:
            why = f"answered {last.http_response.status_code}"
        else:
            why = f"failed ({_first_line(last.error) if last.error else 'no answer'})"
        text = (
            f"Azure {why} for {last.http_request.method} {urlsplit(last.http_request.url).path}; "
            f"retrying in {pause:.1f} s (retry {len(settings['history'])} of {_RETRIES})"
        )
        log.warning("%s", text)
        if self._on_wait is not None:
            self._on_wait(text)
        super().sleep(settings, transport, response)


def open_location(
    url: str,
    settings: StorageSettings,
    create: bool,
    on_wait: Callable[[str], None] | None = None,
) -> BlobStore:
    """The store behind `az://container/prefix`, with the first credentials the settings give;
    `on_wait` hears, as well as the log, of each request retried."""
    parts = urlsplit(url)
    service = _service_client(settings, on_wait)
    return BlobStore(service.get_container_client(parts.netloc), parts.path, create)


def _service_client(
    settings: StorageSettings, on_wait: Callable[[str], None] | None
) -> BlobServiceClient:
    options: dict[str, Any] = {
        "max_single_put_size": _SINGLE_PUT_BYTES,
        "retry_policy": _Retry(on_wait),
        "connection_timeout": 10,
    }
    if settings.azure_connection_string:
        try:
            return BlobServiceClient.from_connection_string(
                settings.azure_connection_string, **options
            )
        except ValueError:  # its message may quote the string, key included
            raise ConfigError(
                "AZURE_STORAGE_CONNECTION_STRING is not a valid connection string."
            ) from None
    if settings.azure_credentials_path:
        account, key = _read_credentials(settings.azure_credentials_path)
        return BlobServiceClient(
            _endpoint(settings, account),
            credential={"account_name": account, "account_key": key},
            **options,
        )
    if settings.azure_account:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise ConfigError(
                "AZURE_STORAGE_ACCOUNT without a key needs azure-identity: "
                "pip install 'amqp-jobkit[azure-identity]'."
            ) from None
        return BlobServiceClient(
            _endpoint(settings, settings.azure_account),
            credential=DefaultAzureCredential(),
            **options,
        )
    raise ConfigError(
        "az:// needs AZURE_STORAGE_CONNECTION_STRING, AZURE_CREDENTIALS_PATH or "
        "AZURE_STORAGE_ACCOUNT."
    )


def _endpoint(settings: StorageSettings, account: str) -> str:
    return settings.azure_blob_endpoint or f"https://{account}.blob.core.windows.net"


def _read_credentials(path: str) -> tuple[str, str]:
    """(account, key) from the azure_credentials.json of the AKS blog's workers."""
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    except OSError as exc:
        raise ConfigError(
            f"AZURE_CREDENTIALS_PATH {path!r}: cannot read it ({exc.strerror})."
        ) from exc
    except ValueError:
        raise ConfigError(f"AZURE_CREDENTIALS_PATH {path!r} is not valid JSON.") from None
    account = document.get("storage_account") if isinstance(document, dict) else None
    key = document.get("account_key") if isinstance(document, dict) else None
    if not isinstance(account, str) or not isinstance(key, str) or not account or not key:
        raise ConfigError(
            f"AZURE_CREDENTIALS_PATH {path!r} needs the fields 'storage_account' and 'account_key'."
        )
    return account, key
