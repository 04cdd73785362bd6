"""The Python API: a program publishes a batch from any thread, recorded as the CLI records it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pika
import pytest
from conftest import read_depths, settled_depths, status_counts

from jobkit_publisher.api import BatchResult, publish
from jobkit_worker.errors import InputError

pytestmark = pytest.mark.rabbitmq


def test_threads_publishing_at_once_each_publish_and_the_record_holds_them_all(
    env: dict[str, str],
) -> None:
    batches = [[f"t{thread}-{n}.csv" for n in range(50)] for thread in range(4)]

    def publish_batch(names: list[str]) -> BatchResult:
        assert threading.current_thread() is not threading.main_thread()
        return publish(names, environ={**env, "NO_INPUT": "true"})

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(publish_batch, batches))

    assert [sorted(result.confirmed) for result in results] == [sorted(b) for b in batches]
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (200, 0)) == (200, 0)
    counts = status_counts({**env, "NO_INPUT": "true"})
    assert (counts["published"], counts["queued"], counts["adds_up"]) == (200, 200, True)


def test_a_second_publish_of_the_same_items_skips_those_queued(env: dict[str, str]) -> None:
    Path(env["INPUT_URL"], "a.csv").write_text("Datetime,Temperature\n2017-12-01 00:00:00,4\n")

    first = publish(environ=env)
    second = publish(environ=env)

    assert (first.confirmed, second.confirmed, second.waiting) == (["a.csv"], [], ["a.csv"])


def test_a_refused_name_publishes_nothing_and_names_why(env: dict[str, str]) -> None:
    with pytest.raises(InputError, match=r"\.\./up\.csv"):
        publish(["fine.csv", "../up.csv"], environ={**env, "NO_INPUT": "true"})

    assert not list(Path(env["OUTPUT_URL"]).iterdir()), "nothing recorded"
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):  # nor declared
        read_depths(env["BROKER_URL"], env["QUEUE"])
