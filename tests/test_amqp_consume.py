"""job-wq-1 of the Kubernetes docs, for real: amqp-consume feeds `jobkit-worker --stdin`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pika
import pytest
from conftest import ROOT, settled_depths

from jobkit_publisher.data.samples import sample_csv
from jobkit_publisher.queue.publish import publish_items
from jobkit_worker.builtin.aggregate import aggregate_csv
from jobkit_worker.settings import Settings

pytestmark = [pytest.mark.rabbitmq, pytest.mark.amqp_tools]

CONSUME_ONE = ROOT / "images" / "consume-one"


@pytest.fixture
def consume_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with amqp-consume and this virtualenv's python on PATH, as in the image."""
    if shutil.which("amqp-consume") is None:
        message = (
            "amqp-consume is missing; install it with 'make amqp-tools' (Debian's amqp-tools)."
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"}


def _consume_one(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # amqp-consume waits for ever on an empty queue; every test here gives it a message.
    return subprocess.run([str(CONSUME_ONE)], env=env, capture_output=True, text=True, timeout=60)


def _delivery_counts(broker_url: str, queue: str) -> dict[str, int]:
    """Each waiting item's x-delivery-count, read without taking it."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    counts = {}
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            break
        counts[body.decode()] = int((properties.headers or {}).get("x-delivery-count", 0))
    connection.close()  # unacked: they go back to the queue
    return counts


def test_one_message_in_gives_one_output_and_the_message_is_gone(
    consume_env: dict[str, str], settings: Settings
) -> None:
    data = sample_csv(2_000, seed=0, index=1)
    Path(settings.input_url, "temperature1.csv").write_bytes(data)
    publish_items(settings, ["temperature1.csv"])

    result = _consume_one(consume_env)

    assert result.returncode == 0, result.stderr
    assert Path(settings.output_url, "temperature1_aggregated.csv").read_bytes() == aggregate_csv(
        data
    )
    assert settled_depths(settings.broker_url, settings.queue, (0, 0)) == (0, 0)


def test_a_failing_command_loses_nothing_but_amqp_consume_still_exits_0(
    consume_env: dict[str, str], settings: Settings
) -> None:
    publish_items(settings, ["ghost.csv"])

    result = _consume_one(consume_env)

    assert result.returncode == 0, "amqp-consume hides the worker's exit code 3"
    assert '"code": 3' in result.stdout
    assert _delivery_counts(settings.broker_url, settings.queue) == {"ghost.csv": 1}
    assert settled_depths(settings.broker_url, settings.queue, (1, 0)) == (1, 0), (
        "not dead-lettered"
    )


def test_a_successful_run_returns_the_next_message_it_prefetched_with_one_delivery_counted(
    consume_env: dict[str, str], settings: Settings
) -> None:
    Path(settings.input_url, "temperature1.csv").write_bytes(sample_csv(2_000, 0, 1))
    publish_items(settings, ["temperature1.csv", "temperature2.csv", "temperature3.csv"])

    assert _consume_one(consume_env).returncode == 0

    assert _delivery_counts(settings.broker_url, settings.queue) == {
        "temperature2.csv": 1,
        "temperature3.csv": 0,
    }
