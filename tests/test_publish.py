"""Publishing with batched confirms counts exactly what the broker confirmed."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import jobkit, settled_depths

from jobkit_publisher.queue.publish import WINDOW, _WindowedPublisher, publish_items
from jobkit_worker.settings import Settings

pytestmark = pytest.mark.rabbitmq


def test_more_items_than_one_confirm_window_are_all_confirmed_and_queued(
    settings: Settings,
) -> None:
    names = [f"item{i}.csv" for i in range(2 * WINDOW + 17)]

    confirmed = publish_items(settings, names)

    assert confirmed == names
    assert settled_depths(settings.broker_url, settings.queue, (len(names), 0)) == (len(names), 0)


def test_messages_the_broker_returns_as_unroutable_are_not_counted(settings: Settings) -> None:
    nowhere = Settings(
        broker_url=settings.broker_url,
        queue=settings.queue + "-undeclared",
        broker_retry_seconds=1,  # how long refusals are retried
    )
    publisher = _WindowedPublisher(nowhere, ["a.csv", "b.csv", "c.csv"])

    publisher.run()

    assert publisher.confirmed == 0
    assert publisher.refused == ["a.csv", "b.csv", "c.csv"]


def test_a_new_queue_on_a_broker_url_naming_several_nodes_is_not_waited_for(
    env: dict[str, str],
) -> None:
    url = env["BROKER_URL"]
    host, other = ("localhost", "127.0.0.1") if "localhost" in url else ("127.0.0.1", "localhost")
    several = {key: value for key, value in env.items() if key != "NEW_QUEUE_WAIT_SECONDS"}
    several["BROKER_URL"] = f"{url},{url.replace(host, other)}"  # one node by two names

    result = jobkit(several, "publish", "a.csv", "b.csv")

    assert result.returncode == 0, result.stderr
    assert "is new: waiting" not in result.stderr, result.stderr


@pytest.mark.parametrize("torn", [b'{"confirmed": ["a", "b"], "unconf', b"", b'{"confirmed": 7}'])
def test_a_damaged_publish_record_is_named_and_nothing_is_published_again(
    env: dict[str, str], torn: bytes
) -> None:
    job = {**env, "NO_INPUT": "true"}
    assert jobkit(job, "publish", "a", "b").returncode == 0
    record = Path(env["OUTPUT_URL"], ".jobkit", f"{env['QUEUE']}.published.json")
    record.write_bytes(torn)  # a disk that filled, a copy cut short

    again = jobkit(job, "publish", "a", "b")
    status = jobkit(job, "status")

    for result in (again, status):
        assert result.returncode == 2, result.stdout + result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert f"The publish record {record} is damaged" in line, line
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (2, 0)) == (2, 0)
