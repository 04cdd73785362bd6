"""The dead-letter queue: what is in it and why, and putting items back after a fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobkit_worker.broker import (
    DELIVERIES_HEADER,
    DELIVERY_LIMIT,
    FAILED_AT_HEADER,
    REASON_HEADER,
    Delivery,
    Session,
    dead_queue_name,
)
from jobkit_worker.errors import BrokerLost
from jobkit_worker.settings import Settings

_BROKER_REASONS = {
    "delivery_limit": "delivered {n} times without an ack (each time the worker crashed, was "
    "killed or lost its connection)",
    "rejected": "rejected by a consumer",
    "expired": "expired in the queue",
    "maxlen": "dropped because the queue was full",
}


@dataclass(frozen=True)
class DeadLetter:
    """One item in the dead-letter queue, why it is there, and the broker's x-death history."""

    item: str
    reason: str
    deliveries: int  # how many times the item was delivered before it was dead-lettered
    failed_at: str = ""
    history: list[str] = field(default_factory=list)


def peek_dead_letters(session: Session, queue: str) -> list[DeadLetter]:
    """The dead letters of work queue `queue`, oldest first, left in place; readers take
    turns, so that each sees them all."""
    with session.turn(queue):
        return [_dead_letter(delivery) for delivery in session.peek(dead_queue_name(queue))]


def list_dead_letters(settings: Settings) -> list[DeadLetter]:
    """Every dead letter of the job's queue, left in place."""
    with Session(settings, "dead") as session:
        return peek_dead_letters(session, settings.queue)


def requeue_dead_letters(settings: Settings, names: set[str] | None) -> list[str]:
    """Move dead letters (those named, or all) back to the work queue; returns the items moved.

    Each is published afresh (confirmed, with a new delivery count) before its dead letter is
    acked, so a failure part-way leaves an item in both queues, never in neither.
    """
    moved: list[str] = []
    try:
        with Session(settings, "requeue") as session:
            session.declare(settings.queue)
            with session.turn(settings.queue):
                _requeue(session, settings.queue, names, moved)
    except BrokerLost as exc:
        raise BrokerLost(
            f"{exc} {len(moved)} dead letters had been moved back by then; run the same "
            "'jobkit dead requeue' again for the rest."
        ) from exc
    return moved


def _requeue(session: Session, queue: str, names: set[str] | None, moved: list[str]) -> None:
    """Move the dead letters of `queue` named in `names` (or all) back, adding each to `moved`."""
    dead_queue = dead_queue_name(queue)
    for _ in range(session.depth(dead_queue)):
        delivery = session.get(dead_queue)
        if delivery is None:
            break
        item = delivery.body.decode("utf-8", errors="replace")
        if names is not None and item not in names:
            continue  # left unacked: returned to the dead-letter queue on close
        session.publish(queue, delivery.body)
        session.ack(delivery)
        moved.append(item)


def _dead_letter(delivery: Delivery) -> DeadLetter:
    headers: dict[str, Any] = delivery.headers
    item = delivery.body.decode("utf-8", errors="replace")
    deaths = headers.get("x-death") or []
    history = [_death(death) for death in deaths]
    if REASON_HEADER in headers:
        return DeadLetter(
            item,
            _text(headers[REASON_HEADER]),
            int(headers.get(DELIVERIES_HEADER, 0)),
            _text(headers.get(FAILED_AT_HEADER, "")),
            history,
        )
    cause = _text(deaths[0].get("reason", "unknown")) if deaths else "unknown"
    deliveries = DELIVERY_LIMIT + 1 if cause == "delivery_limit" else 0
    template = _BROKER_REASONS.get(cause, f"dead-lettered by the broker ({cause})")
    failed_at = _when(deaths[0].get("time")) if deaths else ""
    return DeadLetter(item, template.format(n=deliveries), deliveries, failed_at, history)


def _death(death: dict[str, Any]) -> str:
    """One x-death entry as text: 'delivery_limit from q (1 time) at 2026-…'."""
    count = int(death.get("count", 1))
    times = "time" if count == 1 else "times"
    return (
        f"{_text(death.get('reason', '?'))} from {_text(death.get('queue', '?'))} "
        f"({count} {times}) at {_when(death.get('time'))}"
    )


def _when(value: object) -> str:
    return (
        value.isoformat(timespec="seconds") if isinstance(value, datetime) else _text(value or "")
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
