"""The dead-letter queue: what is in it and why, and putting items back after a fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from worker.broker import (
    ATTEMPTS_HEADER,
    DELIVERY_LIMIT,
    REASON_HEADER,
    connect,
    declare_queue,
    item_properties,
    queue_depth,
)
from worker.settings import Settings

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
    attempts: int
    failed_at: str = ""
    history: list[str] = field(default_factory=list)


def peek_dead_letters(channel: BlockingChannel, dead_queue: str) -> list[DeadLetter]:
    """The dead letters in `dead_queue`, oldest first; closes `channel`, which returns them."""
    letters = []
    for _ in range(queue_depth(channel, dead_queue)):
        method, properties, body = channel.basic_get(dead_queue, auto_ack=False)
        if method is None:
            break
        letters.append(_dead_letter(body, properties))
    channel.close()  # unacked messages go back to the queue in their places
    return letters


def list_dead_letters(settings: Settings) -> list[DeadLetter]:
    """Every dead letter of the job's queue, left in place."""
    connection = connect(settings, "dead")
    try:
        channel = connection.channel()
        declare_queue(channel, settings.queue)
        return peek_dead_letters(channel, settings.dead_queue)
    finally:
        if connection.is_open:
            connection.close()


def requeue_dead_letters(settings: Settings, names: set[str] | None) -> list[str]:
    """Move dead letters (those named, or all) back to the work queue; returns the items moved.

    Each is published afresh (confirmed, with a new delivery count) before its dead letter is
    acked, so a failure part-way leaves an item in both queues, never in neither.
    """
    connection = connect(settings, "requeue")
    moved = []
    try:
        publish = connection.channel()
        publish.confirm_delivery()
        declare_queue(publish, settings.queue)
        take = connection.channel()
        for _ in range(queue_depth(take, settings.dead_queue)):
            method, _properties, body = take.basic_get(settings.dead_queue, auto_ack=False)
            if method is None:
                break
            item = body.decode("utf-8", errors="replace")
            if names is not None and item not in names:
                continue  # left unacked: returned to the dead-letter queue on close
            publish.basic_publish("", settings.queue, body, item_properties(item), mandatory=True)
            take.basic_ack(method.delivery_tag)
            moved.append(item)
    finally:
        if connection.is_open:
            connection.close()
    return moved


def _dead_letter(body: bytes, properties: pika.BasicProperties) -> DeadLetter:
    headers: dict[str, Any] = properties.headers or {}
    item = body.decode("utf-8", errors="replace")
    deaths = headers.get("x-death") or []
    history = [_death(death) for death in deaths]
    if REASON_HEADER in headers:
        return DeadLetter(
            item,
            _text(headers[REASON_HEADER]),
            int(headers.get(ATTEMPTS_HEADER, 0)),
            _text(headers.get("jobkit-failed-at", "")),
            history,
        )
    cause = _text(deaths[0].get("reason", "unknown")) if deaths else "unknown"
    attempts = DELIVERY_LIMIT + 1 if cause == "delivery_limit" else 0
    template = _BROKER_REASONS.get(cause, f"dead-lettered by the broker ({cause})")
    failed_at = _when(deaths[0].get("time")) if deaths else ""
    return DeadLetter(item, template.format(n=attempts), attempts, failed_at, history)


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
