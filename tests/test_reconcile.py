"""Reconciliation: every published item is accounted for, or `status` and `run` say which is not."""

from __future__ import annotations

import json
from pathlib import Path

import pika
import pytest
from conftest import jobkit

from publisher.queue.reconcile import reconcile
from worker.errors import ExitCode

GOOD = "Datetime,Temperature\n2017-12-01 00:00:00,4.5\n"


def _status(env: dict[str, str]) -> dict[str, object]:
    result = jobkit(env, "status", "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout)["reconciliation"])


def _publish(env: dict[str, str], files: dict[str, str]) -> None:
    for name, content in files.items():
        Path(env["INPUT_URL"], name).write_text(content)
    assert jobkit(env, "publish", *files).returncode == 0


@pytest.mark.rabbitmq
def test_after_a_run_every_published_item_is_done_or_dead_lettered(env: dict[str, str]) -> None:
    _publish(env, {"a.csv": GOOD, "b.csv": GOOD, "bad.csv": "Datetime,Temperature\n"})

    run = jobkit(env, "run", "--parallelism", "2")

    assert run.returncode == ExitCode.DEAD, run.stdout
    line = "All accounted for: 3 published, 2 done, 1 dead-lettered, 0 queued, 0 held by workers."
    assert line in run.stdout, run.stdout
    status = _status(env)
    assert (status["published"], status["done"], status["dead_lettered"]) == (3, 2, 1)
    assert status["adds_up"] is True


@pytest.mark.rabbitmq
def test_a_published_item_whose_message_was_lost_is_named_as_missing(env: dict[str, str]) -> None:
    _publish(env, {"lost.csv": GOOD})
    connection = pika.BlockingConnection(pika.URLParameters(env["BROKER_URL"]))
    connection.channel().queue_purge(env["QUEUE"])  # lost behind the kit's back
    connection.close()
    _publish(env, {"kept.csv": GOOD})

    run = jobkit(env, "run", "--parallelism", "1")

    assert "Not all accounted for: 2 published, 1 done, 0 dead-lettered, 0 queued" in run.stdout
    assert "1 is neither done, dead-lettered nor queued (lost.csv): lost;" in run.stdout
    status = _status(env)
    assert status["outstanding"] == ["lost.csv"] and status["adds_up"] is False


@pytest.mark.rabbitmq
def test_status_cannot_tell_an_item_a_worker_holds_from_a_lost_one_and_says_so(
    env: dict[str, str],
) -> None:
    _publish(env, {"held.csv": GOOD})
    connection = pika.BlockingConnection(pika.URLParameters(env["BROKER_URL"]))
    method, _, _ = connection.channel().basic_get(env["QUEUE"], auto_ack=False)
    assert method is not None

    status = jobkit(env, "status")

    connection.close()  # the held item goes back to the queue
    assert "1 is neither done, dead-lettered nor queued (held.csv): held by a worker right now" in (
        status.stdout
    ), status.stdout


@pytest.mark.rabbitmq
def test_purge_starts_a_new_batch(env: dict[str, str]) -> None:
    _publish(env, {"old.csv": GOOD})
    assert jobkit(env, "purge", "--yes").returncode == 0

    assert _status(env)["published"] == 0


def test_an_item_done_after_being_dead_lettered_counts_once_as_done_and_is_named() -> None:
    result = reconcile(["a", "b"], done={"a", "b"}, dead={"b"}, queued=0, in_flight=0)

    assert (result.done, result.dead, result.adds_up) == (2, 0, True)
    assert "1 is both done and dead-lettered (b)" in result.summary()


def test_more_queued_than_outstanding_does_not_add_up() -> None:
    result = reconcile(["a"], done=set(), dead=set(), queued=3, in_flight=0)

    assert not result.adds_up
    assert "2 are queued beyond those outstanding" in result.summary()


def test_without_a_record_of_publishing_it_says_so() -> None:
    result = reconcile(None, done={"a"}, dead=set(), queued=0, in_flight=None)

    assert result.summary().startswith("No record of what was published")
