"""Success records: beside an item's outputs, what was done, from which input, by whom.

A record is written after the outputs and before the ack. A redelivered item whose record still
matches its input and outputs is acked without doing the work again.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime

from jobkit_worker.errors import InputError
from jobkit_worker.names import record_name
from jobkit_worker.storage.base import Entry, Store, content_md5
from jobkit_worker.tasks.contract import Outputs


@dataclass(frozen=True)
class Record:
    """One item done: its input's size and SHA-256, the task, each output's MD5 and version
    (as the store lists it, so a check of the ledger needs no reading), and who did it when.

    Outputs carry MD5, the digest Azure Blob Storage keeps for every blob; the input, read in
    full anyway, gets SHA-256, which this machine's CPUs compute over twice as fast.
    """

    item: str
    queue: str  # the work queue the item came from
    input_bytes: int
    input_sha256: str
    outputs: dict[str, str]
    deliveries: int  # how many times the broker delivered the item, this time included
    worker: str
    finished_at: str
    seconds: float
    task: str = ""  # the task that did it (TASK, or TASK_COMMAND); "" in older records
    versions: dict[str, str] = field(default_factory=dict)  # output -> its version when stored
    # The input as the store listed it when read ("" with NO_INPUT, and in older records): a
    # later listing that shows the same needs no reading to know the input is unchanged.
    input_version: str = ""
    input_md5: str = ""  # where the store keeps one (Azure's Content-MD5)

    def to_bytes(self) -> bytes:
        """The record as stored: one line of JSON (indenting it would take Python's slower
        encoder instead of C's, for every item)."""
        return json.dumps(vars(self), sort_keys=True).encode() + b"\n"


def make_record(
    item: str,
    queue: str,
    task: str,
    data: bytes,
    source: Entry | None,
    outputs: Outputs,
    versions: dict[str, str],
    deliveries: int,
    seconds: float,
) -> Record:
    """The record of `item`, taken from `queue`, done by `task` from input `data` (stored as
    `source`; None without an input file) into `outputs`, stored as `versions`."""
    return Record(
        item=item,
        queue=queue,
        input_bytes=len(data),
        input_sha256=hashlib.sha256(data).hexdigest(),
        outputs={name: content_md5(content).hex() for name, content in outputs.items()},
        deliveries=deliveries,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        finished_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        seconds=round(seconds, 3),
        task=task,
        versions=versions,
        input_version=source.version if source else "",
        input_md5=source.md5.hex() if source and source.md5 else "",
    )


def read_record(store: Store, item: str) -> Record | None:
    """The record of `item` in `store`, or None when there is none or it is unreadable."""
    try:
        fields = json.loads(store.read(record_name(item)))
        return Record(**fields)
    except (InputError, ValueError, TypeError):
        return None


def is_current(store: Store, record: Record | None, task: str, data: bytes) -> bool:
    """True when `record` describes `task` done from input `data` and every output it lists
    is still stored as it was."""
    if record is None or record.input_bytes != len(data):
        return False
    if record.task and record.task != task:
        return False
    if record.input_sha256 != hashlib.sha256(data).hexdigest():
        return False
    return all(
        (digest := store.digest(name)) is not None and digest.hex() == md5
        for name, md5 in record.outputs.items()
    )


def input_changed(record: Record, listed: Entry) -> bool | None:
    """Whether the input now `listed` differs from the one `record` was made from: by size,
    then by version or the listed digest; None when only reading it can tell (same size, a
    new time, and no digest listed)."""
    if record.input_bytes != listed.size:
        return True
    if record.input_version and record.input_version == listed.version:
        return False
    if record.input_md5 and listed.md5 is not None:
        return record.input_md5 != listed.md5.hex()
    return None
