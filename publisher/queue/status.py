"""What the queue, the dead-letter queue and the output store hold right now."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobkit_publisher.queue.dead import DeadLetter, peek_dead_letters
from jobkit_publisher.queue.ledger import read_ledger
from jobkit_publisher.queue.published import Published, read_published
from jobkit_publisher.queue.reconcile import Reconciliation, reconcile
from jobkit_worker.broker import Session, dead_queue_name
from jobkit_worker.done_records import Record
from jobkit_worker.settings import Settings
from jobkit_worker.storage.base import open_store


@dataclass(frozen=True)
class QueueStatus:
    """A snapshot of one job's queue, dead letters and outputs."""

    queue: str
    dead_queue: str
    ready: int
    reconciliation: Reconciliation
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # of the items done, whatever the task
    records: dict[str, Record] = field(default_factory=dict)  # item -> its success record
    recorded: set[str] = field(default_factory=set)  # outputs any record names, holding or not
    published: Published | None = None  # as 'jobkit publish' recorded it, if it did


def read_status(settings: Settings, verify: bool = False) -> QueueStatus:
    """Read the queue depth and how many messages workers hold, every dead letter (left in
    place), the success records (checked against the outputs and the inputs; with `verify`,
    by digests computed from every file's bytes) and what was published."""
    with Session(settings, "status") as session:
        ready = session.depth_if_any(settings.queue)
        holders = session.holders(settings.queue)
        dead = peek_dead_letters(session, settings.queue)
    store = open_store(settings.output_url, settings)
    published = read_published(store, settings.queue)
    inputs = None if settings.no_input else open_store(settings.input_url, settings)
    ledger = read_ledger(
        store, settings.queue, published.expected if published else None, inputs, verify
    )
    reconciliation = reconcile(
        published.expected if published else None,
        set(ledger.records),
        {letter.item for letter in dead},
        ready,
        holders,
        ledger.broken,
        published.unconfirmed if published else set(),
        ledger.checked(),
        ledger.stale,
    )
    outputs = sorted({output for record in ledger.records.values() for output in record.outputs})
    return QueueStatus(
        settings.queue,
        dead_queue_name(settings.queue),
        ready,
        reconciliation,
        dead,
        outputs,
        ledger.records,
        ledger.recorded,
        published,
    )


def read_depth(settings: Settings) -> int:
    """Messages ready in the work queue, 0 when it does not exist: the broker is not changed."""
    with Session(settings, "depth") as session:
        return session.depth_if_any(settings.queue)
