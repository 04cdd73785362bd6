"""Reconciliation: every published item is done, dead-lettered, queued or held by a worker.

`jobkit publish` keeps the names it publishes in the output store, beside the success records
the workers write there; the queues say what is dead-lettered and what is still waiting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from worker.done_records import RECORD_SUFFIX, Record, read_record
from worker.errors import InputError
from worker.storage.base import Store

SHOWN = 10  # names listed in a message, at most


def published_name(queue: str) -> str:
    """Where the names published to `queue` are kept in the output store."""
    return f".jobkit/{queue}.published.json"


def record_published(store: Store, queue: str, items: list[str]) -> None:
    """Add `items`, which the broker confirmed, to the names published to `queue`."""
    if not items:
        return
    names = set(read_published(store, queue) or []) | set(items)
    store.write(published_name(queue), json.dumps(sorted(names), indent=0).encode())


def forget_published(store: Store, queue: str) -> None:
    """Start a new batch: what was published to `queue` so far is no longer expected."""
    store.write(published_name(queue), b"[]\n")


def read_published(store: Store, queue: str) -> list[str] | None:
    """The names published to `queue`, or None when `jobkit publish` never recorded any."""
    try:
        names = json.loads(store.read(published_name(queue)))
    except (InputError, ValueError):
        return None
    return [str(name) for name in names] if isinstance(names, list) else None


@dataclass(frozen=True)
class Reconciliation:
    """Published items by where they are now. `in_flight` is None when it cannot be known:
    RabbitMQ does not tell a client how many messages workers hold."""

    published: int | None
    done: int
    dead: int
    queued: int
    in_flight: int | None
    outstanding: list[str]  # published, neither done nor dead-lettered
    done_and_dead: list[str]

    @property
    def unaccounted(self) -> int:
        """Outstanding items the queue and the workers holding items do not account for;
        negative when more are queued than outstanding."""
        return len(self.outstanding) - self.queued - (self.in_flight or 0)

    @property
    def adds_up(self) -> bool:
        return self.published is not None and self.unaccounted == 0

    def to_dict(self) -> dict[str, object]:
        return {
            "published": self.published,
            "done": self.done,
            "dead_lettered": self.dead,
            "queued": self.queued,
            "in_flight": self.in_flight,
            "missing": max(self.unaccounted, 0) if self.in_flight is not None else None,
            "outstanding": self.outstanding,
            "done_and_dead_lettered": self.done_and_dead,
            "adds_up": self.adds_up,
        }

    def summary(self) -> str:
        """The counts in one sentence, then plainly whatever does not add up."""
        if self.published is None:
            return (
                f"No record of what was published (only 'jobkit publish' keeps one): "
                f"{self.done} done, {self.dead} dead-lettered, {self.queued} queued."
            )
        held = "" if self.in_flight is None else f", {self.in_flight} held by workers"
        counts = (
            f"{self.published} published, {self.done} done, {self.dead} dead-lettered, "
            f"{self.queued} queued{held}"
        )
        notes = [
            f"All accounted for: {counts}." if self.adds_up else f"Not all accounted for: {counts}."
        ]
        if self.unaccounted > 0:
            notes.append(self._unaccounted())
        elif self.unaccounted < 0:
            notes.append(
                f"{_are(-self.unaccounted)} queued beyond those outstanding: published twice, or "
                "by another tool."
            )
        if self.done_and_dead:
            notes.append(
                f"{_are(len(self.done_and_dead))} both done and dead-lettered "
                f"({some_names(self.done_and_dead)}); 'jobkit dead list' says why."
            )
        return " ".join(notes)

    def _unaccounted(self) -> str:
        """Which items are neither done, dead-lettered nor queued, as exactly as can be known.

        RabbitMQ says how many messages are queued, not which, and nothing of those a worker
        holds: the names are exact only when nothing is queued, and an item is called lost only
        when no worker can hold it (at the end of a run).
        """
        count, names = self.unaccounted, some_names(self.outstanding)
        if self.queued:
            return (
                f"{count} of these {len(self.outstanding)} ({names}) {_is(count)} neither "
                "queued, done nor dead-lettered; RabbitMQ does not say which. 'jobkit run' "
                "does the queued ones, then names the rest."
            )
        if self.in_flight is None:
            return (
                f"{_are(count)} neither done, dead-lettered nor queued ({names}): held by a "
                "worker right now, or lost; 'jobkit run', once no job runs, says which."
            )
        return (
            f"{_are(count)} neither done, dead-lettered nor queued ({names}): lost; publish "
            f"{'it' if count == 1 else 'them'} again with 'jobkit publish --force "
            f"{' '.join(self.outstanding)}'."
        )


def reconcile(
    published: list[str] | None,
    done: set[str],
    dead: set[str],
    queued: int,
    in_flight: int | None,
) -> Reconciliation:
    """Count the published items by where they are (done wins over dead-lettered)."""
    names = set(published or []) if published is not None else done | dead
    return Reconciliation(
        published=None if published is None else len(names),
        done=len(names & done),
        dead=len((names & dead) - done),
        queued=queued,
        in_flight=in_flight,
        outstanding=sorted(names - done - dead),
        done_and_dead=sorted(names & done & dead),
    )


def done_records(store: Store, queue: str, published: list[str] | None) -> dict[str, Record]:
    """The success records of `queue`'s items by item: of those published to it when that is
    known, else of those the records say came from it."""
    names = [name.removesuffix(RECORD_SUFFIX) for name in store.list(RECORD_SUFFIX)]
    if published is not None:
        names = sorted(set(names) & set(published))
    records = {}
    for item in names:
        record = read_record(store, item)
        if record is not None and (published is not None or record.queue == queue):
            records[item] = record
    return records


def done_items(store: Store, queue: str, published: list[str] | None) -> set[str]:
    """The items of `queue` with a success record (see done_records)."""
    return set(done_records(store, queue, published))


def some_names(names: list[str]) -> str:
    """The first SHOWN names, comma-separated, and how many more there are."""
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _is(count: int) -> str:
    return "is" if count == 1 else "are"


def _are(count: int) -> str:
    return f"{count} {_is(count)}"
