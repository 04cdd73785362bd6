"""The batch report's facts, gathered from the last run's record, the success records beside
the outputs, the dead letters (left in place), the queue and the results themselves."""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from jobkit_publisher.queue.dead import DeadLetter
from jobkit_publisher.queue.publish import broker_version
from jobkit_publisher.queue.published import Published
from jobkit_publisher.queue.reconcile import Reconciliation, some_names
from jobkit_publisher.queue.status import QueueStatus, read_status
from jobkit_publisher.report.curves import Curve, read_curve
from jobkit_publisher.run.outcome import Attempt
from jobkit_publisher.run.record import RunRecord, attempt_begins, load_run
from jobkit_worker.builtin.outputs import OUTPUT_SUFFIX
from jobkit_worker.done_records import Record
from jobkit_worker.errors import InputError, JobkitError
from jobkit_worker.outcome import Verdict
from jobkit_worker.settings import Settings
from jobkit_worker.storage.base import open_store

MAX_CURVES = 48  # drawn in the report; a note names the rest


@dataclass(frozen=True)
class Batch:
    """Everything known about one queue's batch right now."""

    queue: str
    output_url: str
    run: RunRecord | None
    records: dict[str, Record]  # item -> its success record
    outputs: list[str]
    dead_letters: list[DeadLetter]
    queued: int
    reconciliation: Reconciliation
    curves: list[Curve]
    versions: dict[str, str]
    settings: dict[str, str]  # secrets masked: the run's if recorded, else the current ones
    notes: list[str] = field(default_factory=list)  # what is missing or unreadable
    curves_left_out: list[str] = field(default_factory=list)
    run_shown: str = ""  # which run the timeline and rates are of, and when it ran

    @property
    def attempts(self) -> list[Attempt]:
        return self.run.attempts if self.run else []


@dataclass(frozen=True)
class Summary:
    """The batch in numbers; None where the run record would be needed and there is none."""

    published: int
    done: int
    dead: int
    retried: int
    queued: int
    wall_seconds: float | None
    items_per_second: float | None
    busy_workers: float | None  # average workers busy over the run: parallelism achieved
    parallelism: int | None  # asked for
    worker_seconds: dict[str, float]  # start-up, read, task, store, other: summed over attempts


def count_published(batch: Batch, done: set[str], dead: set[str]) -> int:
    """Items published to the batch: as 'jobkit publish' recorded them, else as far as the
    records and the broker show them (items published by another tool)."""
    if batch.reconciliation.published is not None:
        return batch.reconciliation.published
    return len(done | dead) + batch.queued


def read_batch(settings: Settings, run_path: Path) -> Batch:
    """Gather the batch's facts; what is missing or unreadable becomes a note, not an error.

    Raises BrokerUnavailable when the broker cannot be reached.
    """
    notes: list[str] = []
    run = _read_run(settings, run_path, notes)
    status = read_status(settings)
    store = open_store(settings.output_url, settings)
    run = _of_this_batch(run, run_path, status.published, notes)
    # The built-in task's, which the report draws, in natural order: temperature2 before 10.
    results = sorted(store.list(OUTPUT_SUFFIX), key=natural_key)
    _note_missing_records(status, results, run, notes)
    if status.reconciliation.published is not None and not status.reconciliation.adds_up:
        notes.append(status.reconciliation.summary())
    curves = []
    for name in results[:MAX_CURVES]:
        try:
            curves.append(read_curve(name, store.read(name)))
        except JobkitError as exc:
            notes.append(f"Result not drawn: {exc}")
    return Batch(
        queue=settings.queue,
        output_url=settings.output_url,
        run=run,
        records=status.records,
        outputs=results,
        dead_letters=status.dead_letters,
        queued=status.ready,
        reconciliation=status.reconciliation,
        curves=curves,
        versions=_versions(settings),
        settings=_run_options(run) | run.settings if run else settings.describe(),
        notes=notes,
        curves_left_out=results[MAX_CURVES:],
        run_shown=_run_shown(run, run_path),
    )


def summarize(batch: Batch) -> Summary:
    """The batch's counts, and the run's rates and time split when a run was recorded."""
    ran: list[str] = list(batch.run.report.get("done", [])) if batch.run else []
    done = set(batch.records)  # the ledger's, as at the top: not what the run's workers said
    dead = {letter.item for letter in batch.dead_letters}
    attempts = batch.attempts
    if batch.run:
        retried = sum(attempt.outcome is Verdict.RETRY for attempt in attempts)
    else:
        retried = sum(max(record.deliveries - 1, 0) for record in batch.records.values())
    wall = float(batch.run.report.get("seconds", 0.0)) if batch.run else None
    # Finished items, done or dead-lettered, per second: the rate the live display shows.
    finished = 0
    if batch.run:
        report = batch.run.report
        finished = len(ran) + len(report.get("already_done", [])) + len(report.get("dead", []))
    split = _worker_seconds(attempts)
    return Summary(
        published=count_published(batch, done, dead),
        done=len(done),
        dead=len(dead),
        retried=retried,
        queued=batch.queued,
        wall_seconds=wall,
        items_per_second=finished / wall if wall else None,
        busy_workers=sum(split.values()) / wall if wall and attempts else None,
        parallelism=int(batch.run.report.get("parallelism", 0)) if batch.run else None,
        worker_seconds=split,
    )


def natural_key(name: str) -> list[tuple[int, int | str]]:
    """Sorts names with numbers by their value: `t2.csv` before `t10.csv`."""
    return [(1, int(part)) if part.isdigit() else (0, part) for part in re.split(r"(\d+)", name)]


def _run_options(run: RunRecord) -> dict[str, str]:
    """The run's own options, shown with its settings."""
    return {
        "jobkit run --parallelism": str(run.report.get("parallelism", "")),
        "jobkit run --drain": "yes" if run.drain else "no",
        "completions": str(run.report.get("completions", "")),
    }


def _read_run(settings: Settings, path: Path, notes: list[str]) -> RunRecord | None:
    try:
        run = load_run(path)
    except InputError as exc:
        notes.append(str(exc))
        return None
    if run is None:
        notes.append(
            f"No run recorded at {path}: the timeline, wall time and retries come from the run "
            "record that 'jobkit run' writes."
        )
    elif run.queue != settings.queue:
        notes.append(
            f"The run recorded at {path} was for queue {run.queue!r}, not {settings.queue!r}; "
            "it is left out."
        )
        return None
    return run


def _of_this_batch(
    run: RunRecord | None, path: Path, published: Published | None, notes: list[str]
) -> RunRecord | None:
    """`run` if it is of the batch published now, else None, saying why; and whether items
    were published after it ended. Told by the publish record's own times as the run saw them,
    never by comparing the runner's clock with the publisher's."""
    if run is None or published is None or not run.batch_started:
        return run
    if run.batch_started != published.started:
        notes.append(
            f"The run recorded at {path} was of an earlier batch (first published "
            f"{_when(run.batch_started)}; the current one {_when(published.started)}): it is "
            "left out."
        )
        return None
    if published.last > run.batch_last:
        notes.append(
            f"Items were published {_when(published.last)}, after the run recorded at {path} "
            "ended: its timeline and rates do not include them."
        )
    return run


def _run_shown(run: RunRecord | None, path: Path) -> str:
    if run is None:
        return ""
    mode = "draining workers" if run.drain else "a worker per item"
    return (
        f"Run shown: {path}, started {_when(run.started_at)}, "
        f"{float(run.report.get('seconds', 0.0)):.1f} s, {mode}."
    )


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(sep=" ", timespec="seconds")


def _note_missing_records(
    status: QueueStatus, outputs: list[str], run: RunRecord | None, notes: list[str]
) -> None:
    """Say which results no success record names, and which items the run did are not done
    now."""
    unrecorded = [name for name in outputs if name not in status.recorded]
    if unrecorded:
        notes.append(
            f"{len(unrecorded)} results have no success record (written before records were "
            f"kept, by another queue's task, or the record was removed): "
            f"{some_names(unrecorded)}."
        )
    ran = list(run.report.get("done", [])) if run else []
    undone = sorted(set(ran) - set(status.records))
    if undone:
        notes.append(
            f"{len(undone)} items the last run did are not done now ({some_names(undone)}): "
            "'jobkit status' says why."
        )


def _worker_seconds(attempts: list[Attempt]) -> dict[str, float]:
    """Seconds the workers spent starting, reading, in the task, storing, and on the rest
    (acks, dead-lettering, a phase that failed, a worker that said nothing)."""
    split = dict.fromkeys(("start-up", "read", "task", "store", "other"), 0.0)
    for attempt, begin in zip(attempts, attempt_begins(attempts), strict=True):
        start = begin if attempt.took is None else attempt.took
        split["start-up"] += start - begin
        for phase in ("read", "task", "store"):
            split[phase] += attempt.phases.get(phase, 0.0)
        split["other"] += attempt.finished - start - sum(attempt.phases.values())
    return {name: max(seconds, 0.0) for name, seconds in split.items()}


def _versions(settings: Settings) -> dict[str, str]:
    """The kit's, Python's, matplotlib's and the broker's versions."""
    return {
        "amqp-jobkit": _distribution("amqp-jobkit"),
        "Python": platform.python_version(),
        "matplotlib": _distribution("matplotlib"),
        "broker": broker_version(settings),
    }


def _distribution(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"
