"""Drain mode's shape: the next item taken while one is done, and items done acked in groups
once their writes are in place (a group commit)."""

from __future__ import annotations

import logging
import time

from jobkit_worker.broker import Delivery, Session
from jobkit_worker.interruption import worker_interruption
from jobkit_worker.outcome import Outcome
from jobkit_worker.storage.base import Store

log = logging.getLogger(__name__)


class Drain:
    """What a draining worker holds beside the item in hand: the next item, taken while this
    one is done (never more than that one not started), and items done but not yet acked,
    whose writes are put in place together, durably, then acked with one ack (a group
    commit)."""

    ITEMS = 16  # at most this many held done
    SECONDS = 0.2  # nor for longer than this, so that the runner sees progress

    def __init__(self, session: Session, outputs: Store, queue: str) -> None:
        self._session = session
        self._outputs = outputs
        self._queue = queue
        self._next: Delivery | None = None
        self._held: list[tuple[Delivery, Outcome]] = []
        self._since = 0.0

    def take(self) -> Delivery | None:
        """The next item: the one taken ahead, else one from the queue."""
        delivery, self._next = self._next, None
        return delivery or self._session.get(self._queue)

    def take_ahead(self) -> None:
        """Take the next item now, while the one in hand is being done."""
        if self._next is None and not worker_interruption.requested:
            self._next = self._session.get(self._queue)

    def give_back(self) -> None:
        """Give the item taken ahead back, unstarted, costing it no delivery."""
        if self._next is not None:
            self._session.give_back(self._queue, self._next)
            self._next = None

    def hold(self, delivery: Delivery, outcome: Outcome) -> None:
        if not self._held:
            self._since = time.monotonic()
        self._held.append((delivery, outcome))

    def due(self) -> bool:
        """Whether to release now: enough held, held long enough, or items so slow that the
        next would keep this one waiting long."""
        _, last = self._held[-1]
        return (
            len(self._held) >= self.ITEMS
            or time.monotonic() - self._since >= self.SECONDS
            or last.seconds >= self.SECONDS
        )

    def release(self) -> list[Outcome]:
        """Put the held items' writes in place, ack them all, and return their outcomes."""
        if not self._held:
            return []
        held, self._held = self._held, []
        self._outputs.commit()
        self._session.ack(held[-1][0], multiple=True)  # the one taken ahead came later
        for delivery, outcome in held:
            log.info("acked %s (delivery tag %d)", outcome.item, delivery.tag)
        return [outcome for _, outcome in held]
