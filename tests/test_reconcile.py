"""Reconciliation: every published item is accounted for, or `status` and `run` say which is not."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
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


def test_while_workers_may_hold_items_the_unaccounted_are_named_and_no_publish_is_advised() -> None:
    result = reconcile(["a", "b", "c"], done={"c"}, dead=set(), queued=0, in_flight=None)

    summary = result.summary()
    assert "2 are neither done, dead-lettered nor queued (a, b): held by a worker" in summary
    assert "jobkit publish" not in summary, summary


def test_with_some_queued_it_says_how_many_of_which_are_unaccounted_and_advises_no_publish() -> (
    None
):
    result = reconcile(["a", "b", "c"], done=set(), dead=set(), queued=2, in_flight=0)

    summary = result.summary()
    assert "1 of these 3 (a, b, c) is neither queued, done nor dead-lettered" in summary
    assert "RabbitMQ does not say which" in summary and "jobkit publish" not in summary


def test_at_the_end_of_a_run_with_nothing_queued_the_lost_are_named_with_the_command() -> None:
    result = reconcile(["a", "b"], done={"b"}, dead=set(), queued=0, in_flight=0)

    assert "1 is neither done, dead-lettered nor queued (a): lost; publish it again with " in (
        result.summary()
    )
    assert "'jobkit publish --force a'" in result.summary()


@pytest.mark.rabbitmq
def test_a_publish_the_broker_refuses_records_nothing_as_published(env: dict[str, str]) -> None:
    Path(env["INPUT_URL"], "a.csv").write_text(GOOD)
    unreachable = {**env, "BROKER_URL": "amqp://guest:guest@127.0.0.1:9/%2F"}
    unreachable["BROKER_RETRY_SECONDS"] = "0"
    assert jobkit(unreachable, "publish", "a.csv").returncode == ExitCode.CONFIG
    connection = pika.BlockingConnection(pika.URLParameters(env["BROKER_URL"]))
    connection.channel().queue_declare(env["QUEUE"], durable=True)  # a classic queue: refused
    connection.close()

    refused = jobkit(env, "publish", "a.csv")

    assert refused.returncode == ExitCode.CONFIG, refused.stderr
    record = Path(env["OUTPUT_URL"], ".jobkit", f"{env['QUEUE']}.published.json")
    assert not record.exists() or json.loads(record.read_text()) == []


@pytest.mark.rabbitmq
def test_publishing_names_already_published_skips_them_and_says_so_unless_forced(
    env: dict[str, str],
) -> None:
    _publish(env, {"a.csv": GOOD})

    again = jobkit(env, "publish", "a.csv", "b.csv")

    assert again.returncode == 0, again.stderr
    assert "Skipped 1 item already published to" in again.stdout, again.stdout
    assert "(a.csv)" in again.stdout and "--force" in again.stdout
    assert _depth(env) == 2
    forced = jobkit(env, "publish", "--force", "a.csv")
    assert forced.returncode == 0 and "Published 1 item" in forced.stdout, forced.stdout
    assert _depth(env) == 3


def _depth(env: dict[str, str]) -> int:
    return int(jobkit(env, "depth").stdout)


@pytest.mark.rabbitmq
def test_status_counts_any_tasks_outputs_from_the_success_records_of_this_queue_only(
    env: dict[str, str],
) -> None:
    Path(env["INPUT_URL"], "words.txt").write_text("one two")
    assert jobkit(env, "publish", "words.txt").returncode == 0
    program = "cp {input} {output_dir}/copy-of-words.txt"
    assert jobkit(env, "run", "--command", program).returncode == 0

    status = json.loads(jobkit(env, "status", "--json").stdout)
    other = json.loads(jobkit({**env, "QUEUE": env["QUEUE"] + "-other"}, "status", "--json").stdout)

    assert status["outputs"] == ["copy-of-words.txt"]
    assert status["reconciliation"]["done"] == 1
    assert (other["outputs"], other["reconciliation"]["done"]) == ([], 0)


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_ctrl_c_during_publish_records_what_was_confirmed_and_publishing_again_adds_the_rest(
    env: dict[str, str],
) -> None:
    names = [f"item{index:06d}" for index in range(100_000)]
    publish = subprocess.Popen(
        [str(Path(sys.executable).parent / "jobkit"), "publish", "--from", "-"],
        env={**env, "NO_INPUT": "true"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert publish.stdin is not None
    publish.stdin.write("\n".join(names))
    publish.stdin.close()
    record = Path(env["OUTPUT_URL"], ".jobkit", f"{env['QUEUE']}.published.json")
    time.sleep(1.0)  # part-way through

    publish.send_signal(signal.SIGINT)
    publish.wait(timeout=60)
    assert publish.stderr is not None
    stderr = publish.stderr.read()

    assert publish.returncode == 130, stderr
    recorded = json.loads(record.read_text()) if record.exists() else []
    assert f"Interrupted: {len(recorded)} of 100000 items were published and confirmed" in stderr
    assert 0 < len(recorded) < len(names), "interrupted part-way"
    again = jobkit({**env, "NO_INPUT": "true"}, "publish", "--from", "-", stdin="\n".join(names))
    assert again.returncode == 0, again.stderr
    assert f"Skipped {len(recorded)} items already published" in again.stdout
    assert sorted(json.loads(record.read_text())) == names
