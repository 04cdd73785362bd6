"""A confirmed message survives its node's crash even when `jobkit publish` has just created
the queue: it waits until the queue is crash-safe before it says so. A private node, killed
with SIGKILL right after the publish; bounded in time."""

from __future__ import annotations

import time

import pika
import pytest
from conftest import jobkit
from private_broker import PrivateBroker

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.rabbitmq4]


def _depth_after_restart(node: PrivateBroker, queue: str) -> int:
    """The queue's ready messages once the restarted node answers for it."""
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(node.url))
            depth = connection.channel().queue_declare(queue, passive=True).method.message_count
            connection.close()
            return int(depth)
        except pika.exceptions.AMQPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_messages_confirmed_to_a_queue_publish_created_survive_a_crash_at_once(
    env: dict[str, str],
) -> None:
    node = PrivateBroker()
    try:
        node.start()
        job = {**env, "BROKER_URL": node.url}
        del job["NEW_QUEUE_WAIT_SECONDS"]  # the default, by the broker's version
        names = [f"item{number}.csv" for number in range(20)]

        published = jobkit(job, "publish", *names)
        node.kill()  # SIGKILL, as a crash or power loss
        node.start()

        assert published.returncode == 0, published.stderr
        assert _depth_after_restart(node, job["QUEUE"]) == 20, "confirmed messages were lost"
        assert f"Queue {job['QUEUE']!r} is new: waiting" in published.stderr, published.stderr
    finally:
        node.remove()
