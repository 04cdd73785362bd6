"""Publishing with batched confirms counts exactly what the broker confirmed."""

from __future__ import annotations

import pytest
from conftest import settled_depths

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
