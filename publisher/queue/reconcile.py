"""Reconciliation: every published item is done, dead-lettered, queued or held by a worker.

`jobkit publish` keeps the names it publishes in the output store, beside the success records
the workers write there; the queues say what is dead-lettered and what is still waiting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from worker.done_records import RECORD_SUFFIX
from worker.errors import InputError
from worker.storage import Store

SHOWN = 10  # names listed in a message, at most


def published_name(queue: str) -> str:
    """Where the names published to `queue` are kept in the output store."""
    return f".jobkit/{queue}.published.json"


def record_published(store: Store, queue: str, items: list[str]) -> None:
    """Add `items` to the names published to `queue`; called before they are published, so an
    item whose publish fails part-way is counted as missing, never forgotten."""
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
            where = "held by a worker right now, or lost" if self.in_flight is None else "lost"
            notes.append(
                f"{_are(self.unaccounted)} neither done, dead-lettered nor queued "
                f"({some_names(self.outstanding)}): {where}; publish again what is lost."
            )
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


def done_items(store: Store) -> set[str]:
    """The items with a success record in the output store."""
    return {name.removesuffix(RECORD_SUFFIX) for name in store.list(RECORD_SUFFIX)}


def some_names(names: list[str]) -> str:
    """The first SHOWN names, comma-separated, and how many more there are."""
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _are(count: int) -> str:
    return f"{count} {'is' if count == 1 else 'are'}"
