"""What the queue, the dead-letter queue and the output store hold right now."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from worker.broker import (
    ATTEMPTS_HEADER,
    DELIVERY_LIMIT,
    REASON_HEADER,
    connect,
    declare_queue,
    queue_depth,
)
from worker.outputs import is_output
from worker.settings import Settings
from worker.storage import open_store

_BROKER_REASONS = {
    "delivery_limit": "delivered {n} times without an ack (each time the worker crashed, was "
    "killed or lost its connection)",
    "rejected": "rejected by a consumer",
    "expired": "expired in the queue",
    "maxlen": "dropped because the queue was full",
}


@dataclass(frozen=True)
class DeadLetter:
    """One item in the dead-letter queue and why it is there."""

    item: str
    reason: str
    attempts: int


@dataclass(frozen=True)
class QueueStatus:
    """A snapshot of one job's queue, dead letters and outputs."""

    queue: str
    ready: int
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def read_status(settings: Settings) -> QueueStatus:
    """Read the queue depth, every dead letter (left in place) and the outputs written."""
    connection = connect(settings, "status")
    try:
        channel = connection.channel()
        ready = declare_queue(channel, settings.queue)
        dead = peek_dead_letters(connection.channel(), settings.dead_queue)
    finally:
        if connection.is_open:
            connection.close()
    outputs = [name for name in open_store(settings.output_url).list(".csv") if is_output(name)]
    return QueueStatus(settings.queue, ready, dead, outputs)


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


def _dead_letter(body: bytes, properties: pika.BasicProperties) -> DeadLetter:
    headers: dict[str, Any] = properties.headers or {}
    item = body.decode("utf-8", errors="replace")
    if REASON_HEADER in headers:
        reason = _text(headers[REASON_HEADER])
        return DeadLetter(item, reason, int(headers.get(ATTEMPTS_HEADER, 0)))
    deaths = headers.get("x-death") or [{}]
    cause = _text(deaths[0].get("reason", "unknown"))
    attempts = DELIVERY_LIMIT + 1 if cause == "delivery_limit" else 0
    template = _BROKER_REASONS.get(cause, f"dead-lettered by the broker ({cause})")
    return DeadLetter(item, template.format(n=attempts), attempts)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_depth(settings: Settings) -> int:
    """Messages ready in the work queue (declaring it if it does not exist yet)."""
    connection = connect(settings, "depth")
    try:
        return declare_queue(connection.channel(), settings.queue)
    finally:
        connection.close()


def read_inputs(settings: Settings) -> list[str]:
    """The input files under INPUT_URL: every *.csv that is not an output."""
    return [name for name in open_store(settings.input_url).list(".csv") if not is_output(name)]
