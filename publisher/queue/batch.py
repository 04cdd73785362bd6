"""Publishing a batch: gather the items, leave out what was published before, publish the rest
and record it, one publisher of a queue at a time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from jobkit_publisher.queue.ledger import read_ledger
from jobkit_publisher.queue.publish import PublishIncomplete, PublishInterrupted, publish_items
from jobkit_publisher.queue.published import (
    Published,
    forget_published,
    publishing,
    read_published,
    write_published,
)
from jobkit_publisher.queue.reconcile import STALE_WHY
from jobkit_publisher.queue.status import read_depth
from jobkit_worker.broker import Session, dead_queue_name
from jobkit_worker.builtin.outputs import OUTPUT_SUFFIX, is_output
from jobkit_worker.errors import InputError, JobkitError
from jobkit_worker.names import RECORD_SUFFIX, check_name
from jobkit_worker.ownership import claim_location
from jobkit_worker.settings import Settings
from jobkit_worker.storage.base import open_store

INPUT_SUFFIX = ".csv"


@dataclass(frozen=True)
class Inputs:
    """The items found under INPUT_URL, and the files there left out, by why."""

    items: list[str]
    left_out: dict[str, list[str]] = field(default_factory=dict)  # why -> names


@dataclass(frozen=True)
class BatchResult:
    """What publishing a batch did."""

    confirmed: list[str]
    done: list[str]  # done, and their inputs unchanged since: not again
    waiting: list[str]  # published to the queue before and not done: queued, held or dead
    redone: dict[str, str]  # of those published, the ones done before, with why again
    again: list[str]  # sent before without a confirm, so maybe queued: sent again
    depth: int  # ready in the queue after


def find_inputs(settings: Settings) -> Inputs:
    """Every *.csv file under INPUT_URL that is not named as the built-in task's results are,
    and what else is there (the kit's success records aside)."""
    store = open_store(settings.input_url, settings)
    names = store.list()
    inputs = [name for name in names if name.endswith(INPUT_SUFFIX)]
    left_out = {
        f"not named *{INPUT_SUFFIX}": [
            name
            for name in names
            if not name.endswith(INPUT_SUFFIX) and not name.endswith(RECORD_SUFFIX)
        ],
        f"named as results are (*{OUTPUT_SUFFIX}: results, or inputs to publish by name)": [
            name for name in inputs if is_output(name)
        ],
    }
    for name, why in sorted(store.unlisted().items()):
        left_out.setdefault(why, []).append(name)
    return Inputs(
        [name for name in inputs if not is_output(name)],
        {why: group for why, group in left_out.items() if group},
    )


def check_items(items: list[str]) -> tuple[list[str], list[str]]:
    """`items` whose names are safe, in order, each once; and why each other one is not."""
    good, bad = [], []
    for name in dict.fromkeys(items):
        try:
            good.append(check_name(name))
        except InputError as exc:
            bad.append(str(exc))
    return good, bad


def publish_batch(
    settings: Settings, items: list[str], force: bool, on_wait: Callable[[], None]
) -> BatchResult:
    """Publish one message per item not done now and not already published to the queue: the
    new, and those whose input or outputs changed since they were done (all with `force`,
    whose messages say to do them again even if done), and record what the broker confirmed.

    Waits, after calling `on_wait`, while another publisher of the queue is at work. Raises
    PublishIncomplete or PublishInterrupted after recording what was and was not confirmed.
    """
    store = open_store(settings.output_url, settings, create=True)
    inputs = None if settings.no_input else open_store(settings.input_url, settings)
    with publishing(store, settings.queue, on_wait):
        claim_location(store, settings.queue)
        published = read_published(store, settings.queue) or Published()
        ledger = read_ledger(store, settings.queue, published.expected | set(items), inputs)
        # Done since they were published again: a record other than the one they were sent from.
        published.redoing = {
            name: finished
            for name, finished in published.redoing.items()
            if ledger.finished.get(name, "") == finished
        }
        redone = {item: STALE_WHY for item in ledger.stale} | ledger.broken
        done = [] if force else [name for name in items if name in ledger.records]
        waiting = (
            []
            if force
            else [
                name
                for name in items
                if name in published.confirmed
                and name not in ledger.records
                and (name not in redone or name in published.redoing)
            ]
        )
        skipped = set(done) | set(waiting)
        fresh = [name for name in items if name not in skipped]
        again = [name for name in fresh if name in published.unconfirmed]
        published.confirmed |= set(done)  # of this batch too, done already
        published.redoing |= {
            name: ledger.finished.get(name, "") for name in redone.keys() & set(fresh)
        }
        published.sending(fresh, time.time())
        write_published(store, settings.queue, published)
        try:
            confirmed = publish_items(settings, fresh, redo=force)
        except (PublishIncomplete, PublishInterrupted) as exc:
            published.settle(exc.confirmed, exc.unsent)
            write_published(store, settings.queue, published)
            raise
        except JobkitError:  # refused before any was sent
            published.settle([], fresh)
            write_published(store, settings.queue, published)
            raise
        published.settle(confirmed, [])
        write_published(store, settings.queue, published)
    redone = {name: why for name, why in redone.items() if name not in skipped}
    return BatchResult(confirmed, done, waiting, redone, again, read_depth(settings))


def purge(settings: Settings, dead: bool, on_wait: Callable[[], None]) -> int:
    """Delete every message ready in the work queue, and start a new batch: what was published
    is no longer expected; with `dead`, every dead letter. Returns how many were deleted.

    A purge of the work queue waits, after calling `on_wait`, for the queue's publisher, so
    that nothing it removes comes back into the record; one of the dead-letter queue waits for
    the readers of the dead letters, so that it removes those they hold too.
    """
    if dead:
        with Session(settings, "purge") as session, session.turn(settings.queue):
            session.declare(settings.queue)
            return session.purge(dead_queue_name(settings.queue))
    store = open_store(settings.output_url, settings, create=True)
    with publishing(store, settings.queue, on_wait), Session(settings, "purge") as session:
        session.declare(settings.queue)
        purged = session.purge(settings.queue)
        forget_published(store, settings.queue)
        return purged
