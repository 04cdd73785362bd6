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
from conftest import jobkit, read_depths, status_counts

from jobkit_publisher.cli.exits import CommandExit, status_exit
from jobkit_publisher.queue.published import Published, read_published
from jobkit_publisher.queue.reconcile import reconcile
from jobkit_worker.errors import ExitCode
from jobkit_worker.storage.local import LocalStore

GOOD = "Datetime,Temperature\n2017-12-01 00:00:00,4.5\n"


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
    status = status_counts(env)
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
    status = status_counts(env)
    assert status["outstanding"] == ["lost.csv"] and status["adds_up"] is False


@pytest.mark.rabbitmq
def test_status_counts_an_item_a_worker_holds_as_held_not_lost(env: dict[str, str]) -> None:
    _publish(env, {"held.csv": GOOD})
    connection = pika.BlockingConnection(pika.URLParameters(env["BROKER_URL"]))
    method, _, _ = connection.channel().basic_get(env["QUEUE"], auto_ack=False)
    assert method is not None

    status = jobkit(env, "status")

    connection.close()  # the held item goes back to the queue
    assert "All accounted for: 1 published, 0 done, 0 dead-lettered, 0 queued, 1 held" in (
        status.stdout
    ), status.stdout
    assert "lost" not in status.stdout, status.stdout


@pytest.mark.rabbitmq
def test_a_run_that_ends_while_another_run_holds_an_item_does_not_call_it_lost(
    env: dict[str, str],
) -> None:
    _publish(env, {"a.csv": GOOD, "b.csv": GOOD})
    other = pika.BlockingConnection(pika.URLParameters(env["BROKER_URL"]))
    method, _, _ = other.channel().basic_get(env["QUEUE"], auto_ack=False)  # another run's
    assert method is not None

    run = jobkit(env, "run", "--parallelism", "1")

    other.close()
    assert run.returncode == 1, run.stdout  # not finished, as status would say: one is held
    assert "1 held by workers" in run.stdout, run.stdout
    assert "lost" not in run.stdout and "--force" not in run.stdout, run.stdout


@pytest.mark.rabbitmq
def test_purge_starts_a_new_batch(env: dict[str, str]) -> None:
    _publish(env, {"old.csv": GOOD})
    assert jobkit(env, "purge", "--yes").returncode == 0

    assert status_counts(env)["published"] == 0


def test_an_item_done_after_being_dead_lettered_counts_once_as_done_and_is_named() -> None:
    result = reconcile({"a", "b"}, done={"a", "b"}, dead={"b"}, queued=0, holders=0)

    assert (result.done, result.dead, result.adds_up) == (2, 0, True)
    assert "1 is both done and dead-lettered (b)" in result.summary()


def test_more_queued_than_outstanding_does_not_add_up() -> None:
    result = reconcile({"a"}, done=set(), dead=set(), queued=3, holders=0)

    assert not result.adds_up
    assert "2 are queued beyond those outstanding" in result.summary()


def test_without_a_record_of_publishing_it_says_so() -> None:
    result = reconcile(None, done={"a"}, dead=set(), queued=0, holders=0)

    assert result.summary().startswith("No record of what was published")


def test_while_workers_hold_items_none_is_called_lost_and_no_publish_is_advised() -> None:
    result = reconcile({"a", "b", "c"}, done={"c"}, dead=set(), queued=0, holders=2)

    summary = result.summary()
    assert result.adds_up, summary
    assert "2 held by workers." in summary
    assert "2 are taken by workers now (RabbitMQ counts 2 consumers of the queue)" in summary
    assert "lost" not in summary and "jobkit publish" not in summary, summary


def test_more_outstanding_than_workers_hold_are_not_named_lost_while_any_is_held() -> None:
    result = reconcile({"a", "b", "c"}, done=set(), dead=set(), queued=0, holders=1)

    summary = result.summary()
    assert "2 of these 3 (a, b, c) are neither done, dead-lettered, queued nor held" in summary
    assert "lost" not in summary and "jobkit publish" not in summary, summary


def test_with_some_queued_it_says_how_many_of_which_are_unaccounted_and_advises_no_publish() -> (
    None
):
    result = reconcile({"a", "b", "c"}, done=set(), dead=set(), queued=2, holders=0)

    summary = result.summary()
    assert "1 of these 3 (a, b, c) is neither queued, done nor dead-lettered" in summary
    assert "RabbitMQ does not say which" in summary and "jobkit publish" not in summary


def test_at_the_end_of_a_run_with_nothing_queued_the_lost_are_named_with_the_command() -> None:
    result = reconcile({"a", "b"}, done={"b"}, dead=set(), queued=0, holders=0)

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
    published = read_published(LocalStore(Path(env["OUTPUT_URL"])), env["QUEUE"])
    assert published is None or not published.expected, "nothing recorded as published"


@pytest.mark.rabbitmq
def test_publishing_names_already_published_skips_them_and_says_so_unless_forced(
    env: dict[str, str],
) -> None:
    _publish(env, {"a.csv": GOOD})

    again = jobkit(env, "publish", "a.csv", "b.csv")

    assert again.returncode == 0, again.stderr
    assert "Skipped 1 item published to" in again.stdout, again.stdout
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


def _jobkit_process(env: dict[str, str], *args: str, stdin: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "jobkit"), *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write(stdin)
    process.stdin.close()
    return process


def _finished(process: subprocess.Popen[str]) -> tuple[str, str]:
    """(standard output, standard error) of `process`, once it ended."""
    assert process.stdout is not None and process.stderr is not None
    process.wait(timeout=120)
    return process.stdout.read(), process.stderr.read()


def _depth(env: dict[str, str]) -> int:
    try:
        return read_depths(env["BROKER_URL"], env["QUEUE"])[0]
    except pika.exceptions.ChannelClosedByBroker:  # not declared yet
        return 0


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_publishing_again_after_ctrl_c_queues_every_name_exactly_once(env: dict[str, str]) -> None:
    names = [f"item{index:06d}" for index in range(100_000)]
    env = {**env, "NO_INPUT": "true"}
    publish = _jobkit_process(env, "publish", "--from", "-", stdin="\n".join(names))
    deadline = time.monotonic() + 60
    while _depth(env) < 5_000 and time.monotonic() < deadline:
        time.sleep(0.05)  # part-way through

    publish.send_signal(signal.SIGINT)
    _, stderr = _finished(publish)

    assert publish.returncode == 130, stderr
    published = read_published(LocalStore(Path(env["OUTPUT_URL"])), env["QUEUE"])
    assert published is not None
    assert f"Interrupted: {len(published.confirmed)} of 100000 items were published" in stderr
    assert 0 < len(published.confirmed) < len(names), "interrupted part-way"
    assert read_depths(env["BROKER_URL"], env["QUEUE"])[0] == len(published.confirmed)
    again = jobkit(env, "publish", "--from", "-", stdin="\n".join(names))
    assert again.returncode == 0, again.stderr
    assert f"Skipped {len(published.confirmed)} items published to" in again.stdout
    assert read_depths(env["BROKER_URL"], env["QUEUE"])[0] == len(names)


@pytest.mark.rabbitmq
def test_two_publishes_of_the_same_names_at_once_queue_each_name_once(env: dict[str, str]) -> None:
    names = "\n".join(f"item{index:05d}" for index in range(5_000))
    env = {**env, "NO_INPUT": "true"}

    both = [_jobkit_process(env, "publish", "--from", "-", stdin=names) for _ in range(2)]
    results = [_finished(process) for process in both]

    assert [process.returncode for process in both] == [0, 0], results
    stdout = "".join(out for out, _ in results)
    assert stdout.count("Published 5000 items") == 1, stdout
    assert stdout.count("Skipped 5000 items published to") == 1, stdout
    assert read_depths(env["BROKER_URL"], env["QUEUE"])[0] == 5_000


def test_a_name_an_earlier_publisher_left_unconfirmed_stays_so_when_it_goes_unsent_again() -> None:
    published = Published(confirmed=set(), unconfirmed={"maybe-queued"})
    published.sending(["maybe-queued", "fresh"], time.time())

    published.settle([], ["maybe-queued", "fresh"])  # stopped before sending either

    assert published.unconfirmed == {"maybe-queued"}


@pytest.mark.parametrize(
    "command", [("status", "--json"), ("status",), ("depth",), ("dead", "list"), ("report",)]
)
def test_reading_a_queue_that_does_not_exist_creates_nothing(
    env: dict[str, str], command: tuple[str, ...]
) -> None:
    result = jobkit({**env, "NO_INPUT": "true"}, *command)

    assert "Traceback" not in result.stderr, result.stderr
    connection = pika.BlockingConnection(pika.URLParameters(env["BROKER_URL"]))
    for name in (env["QUEUE"], env["QUEUE"] + ".dead"):
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            connection.channel().queue_declare(name, passive=True)
    connection.close()


def test_a_purge_during_a_publish_waits_for_it_and_nothing_purged_comes_back(
    env: dict[str, str],
) -> None:
    job = {**env, "NO_INPUT": "true"}
    assert jobkit(job, "publish", "before.csv").returncode == 0
    names = "\n".join(f"item-{n:05}" for n in range(50_000))
    publisher = subprocess.Popen(
        [str(Path(sys.executable).parent / "jobkit"), "publish", "--from", "-"],
        env=job, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert publisher.stdin is not None
    publisher.stdin.write(names)
    publisher.stdin.close()
    deadline = time.monotonic() + 60
    while read_depths(env["BROKER_URL"], env["QUEUE"])[0] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the publisher is sending

    purge = jobkit(job, "purge", "--yes")
    publisher.wait(timeout=120)

    assert purge.returncode == 0 and publisher.returncode == 0, purge.stderr
    assert "Waiting for another 'jobkit publish'" in purge.stderr, purge.stderr
    assert "Purged 50001 messages" in purge.stdout, purge.stdout
    status = status_counts(job)
    assert (status["published"], status["queued"], status["adds_up"]) == (0, 0, True), status


def test_without_a_publish_record_status_exits_by_the_queues_alone() -> None:
    queued = reconcile(None, done=set(), dead=set(), queued=2, holders=0)
    dead = reconcile(None, done={"a"}, dead={"b"}, queued=0, holders=0)
    done = reconcile(None, done={"a"}, dead=set(), queued=0, holders=0)

    assert [status_exit(r) for r in (queued, dead, done)] == [
        CommandExit.UNFINISHED, CommandExit.NEEDS_YOU, CommandExit.DONE
    ]  # fmt: skip
