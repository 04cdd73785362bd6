"""Putting items on the work queue, one persistent, confirmed message per item."""

from __future__ import annotations

from collections.abc import Sequence

import pika.exceptions

from worker.broker import connect, declare_queue, item_properties
from worker.errors import BrokerUnavailable
from worker.settings import Settings


def publish_items(settings: Settings, names: Sequence[str]) -> int:
    """Publish one message per name and return how many the broker confirmed (all of them).

    Raises BrokerUnavailable, saying how many were confirmed, if the broker refuses one or the
    connection fails part-way.
    """
    connection = connect(settings, "publisher")
    confirmed = 0
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        declare_queue(channel, settings.queue)
        for name in names:
            # With confirms on, basic_publish returns once the broker has the message stored.
            channel.basic_publish(
                "", settings.queue, name.encode(), item_properties(name), mandatory=True
            )
            confirmed += 1
    except pika.exceptions.AMQPError as exc:
        raise BrokerUnavailable(
            f"RabbitMQ confirmed {confirmed} of {len(names)} items to {settings.queue!r}, then "
            f"failed ({exc!r}); publish the rest again once it is back."
        ) from exc
    finally:
        if connection.is_open:
            connection.close()
    return confirmed


def purge_queue(settings: Settings, queue: str) -> int:
    """Delete every ready message in `queue` (the work or dead-letter queue); returns how many."""
    connection = connect(settings, "purge")
    try:
        channel = connection.channel()
        declare_queue(channel, settings.queue)
        return int(channel.queue_purge(queue).method.message_count)
    finally:
        connection.close()
