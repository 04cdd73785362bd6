"""What the queue, the dead-letter queue and the output store hold right now."""

from __future__ import annotations

from dataclasses import dataclass, field

from publisher.queue.dead import DeadLetter, peek_dead_letters
from publisher.queue.reconcile import Reconciliation, done_records, read_published, reconcile
from worker.broker import Session, dead_queue_name
from worker.builtin.outputs import is_output
from worker.done_records import Record
from worker.settings import Settings
from worker.storage.base import open_store


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


def read_status(settings: Settings, in_flight: int | None = None) -> QueueStatus:
    """Read the queue depth, every dead letter (left in place), the outputs and success records
    written, and what was published; `in_flight` is how many items workers hold, if known."""
    with Session(settings, "status") as session:
        ready = session.declare(settings.queue)
        dead = peek_dead_letters(session, settings.queue)
    store = open_store(settings.output_url, settings)
    published = read_published(store, settings.queue)
    records = done_records(store, settings.queue, published)
    reconciliation = reconcile(
        published, set(records), {letter.item for letter in dead}, ready, in_flight
    )
    outputs = sorted({output for record in records.values() for output in record.outputs})
    return QueueStatus(
        settings.queue,
        dead_queue_name(settings.queue),
        ready,
        reconciliation,
        dead,
        outputs,
        records,
    )


def read_depth(settings: Settings) -> int:
    """Messages ready in the work queue (declaring it if it does not exist yet)."""
    with Session(settings, "depth") as session:
        return session.declare(settings.queue)


def read_inputs(settings: Settings) -> list[str]:
    """The input files under INPUT_URL: every *.csv that is not an output."""
    return [
        name
        for name in open_store(settings.input_url, settings).list(".csv")
        if not is_output(name)
    ]
