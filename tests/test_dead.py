"""`jobkit dead`: dead letters with their reasons and history, and putting them back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pika
import pytest
from conftest import jobkit, settled_depths

from jobkit_publisher.cli.exits import CommandExit
from jobkit_worker.broker import DELIVERIES_HEADER, DELIVERY_LIMIT, REASON_HEADER
from jobkit_worker.errors import ExitCode

pytestmark = pytest.mark.rabbitmq

BAD = "Datetime,Temperature\n2017-12-01 00:00:00,warm\n"
GOOD = "Datetime,Temperature\n2017-12-01 00:00:00,4.5\n"


def _dead_letters(env: dict[str, str]) -> list[dict[str, object]]:
    result = jobkit(env, "dead", "list", "--json")
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout)["dead_letters"])


def test_dead_list_shows_the_reason_the_worker_gave(env: dict[str, str]) -> None:
    Path(env["INPUT_URL"], "bad.csv").write_text(BAD)
    jobkit(env, "publish", "bad.csv")
    jobkit(env, "run", "--parallelism", "1")

    (letter,) = _dead_letters(env)

    assert letter["item"] == "bad.csv"
    assert letter["reason"] == "bad.csv: line 2: Temperature 'warm' is not a number."
    assert letter["deliveries"] == 1
    assert str(letter["failed_at"]).startswith("20")
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (0, 1)) == (0, 1), (
        "listing leaves them in place"
    )


def test_dead_list_shows_the_brokers_history_for_an_item_that_was_never_acked(
    env: dict[str, str],
) -> None:
    jobkit(env, "publish", "crashy.csv")
    for _ in range(DELIVERY_LIMIT + 1):  # each consumer goes away without an ack, as a crash would
        connection = pika.BlockingConnection(pika.URLParameters(env["BROKER_URL"]))
        method, _, _ = connection.channel().basic_get(env["QUEUE"], auto_ack=False)
        assert method is not None
        connection.close()

    (letter,) = _dead_letters(env)

    assert letter["item"] == "crashy.csv"
    assert str(letter["reason"]).startswith(f"delivered {DELIVERY_LIMIT + 1} times without an ack")
    assert str(letter["history"][0]).startswith(f"delivery_limit from {env['QUEUE']}")  # type: ignore[index]


def test_requeue_puts_back_the_named_items_and_a_rerun_does_them(env: dict[str, str]) -> None:
    for name in ("a.csv", "b.csv"):
        Path(env["INPUT_URL"], name).write_text(BAD)
    jobkit(env, "publish", "a.csv", "b.csv")
    jobkit(env, "run", "--parallelism", "2")
    Path(env["INPUT_URL"], "a.csv").write_text(GOOD)  # the fix

    requeued = jobkit(env, "dead", "requeue", "a.csv")

    assert requeued.returncode == 0, requeued.stderr
    assert "Requeued 1 item to" in requeued.stdout
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (1, 1)) == (1, 1)
    rerun = jobkit(env, "run", "--parallelism", "1", "--json")
    assert json.loads(rerun.stdout)["done"] == ["a.csv"]
    assert [letter["item"] for letter in _dead_letters(env)] == ["b.csv"]


def test_requeue_of_an_item_not_in_the_dead_letter_queue_says_so(env: dict[str, str]) -> None:
    result = jobkit(env, "dead", "requeue", "nothere.csv")
    assert result.returncode == ExitCode.CONFIG
    assert f"not in '{env['QUEUE']}.dead': nothere.csv" in result.stderr


def test_dead_list_at_80_columns_shows_long_item_names_whole(env: dict[str, str]) -> None:
    name = "a_broken_reading_file_whose_long_name_the_operator_needs_whole_2017_12.csv"
    Path(env["INPUT_URL"], name).write_text(BAD)
    jobkit(env, "publish", name)
    jobkit(env, "run", "--parallelism", "1")

    listed = jobkit({**env, "COLUMNS": "80"}, "dead", "list")

    assert listed.returncode == 0, listed.stderr
    rows = [line.split("│") for line in listed.stdout.splitlines() if line.startswith("│")]
    assert max(map(len, listed.stdout.splitlines())) <= 80
    assert "".join(row[1].strip() for row in rows) == name  # folded, never cut short


def _dead_letter_everything(env: dict[str, str]) -> None:
    """Move every queued item to the dead-letter queue as a worker does: the reason in a header."""
    connection = pika.BlockingConnection(pika.URLParameters(env["BROKER_URL"]))
    channel = connection.channel()
    channel.confirm_delivery()
    while True:
        method, _, body = channel.basic_get(env["QUEUE"], auto_ack=False)
        if method is None:
            break
        headers = {REASON_HEADER: "missing", DELIVERIES_HEADER: 1}
        channel.basic_publish("", env["QUEUE"] + ".dead", body, pika.BasicProperties(
            delivery_mode=2, headers=headers))  # fmt: skip
        channel.basic_ack(method.delivery_tag)
    connection.close()


def test_readers_at_once_each_see_every_dead_letter_and_none_lost(env: dict[str, str]) -> None:
    names = [f"item-{n:03}" for n in range(300)]
    ready = {**env, "NO_INPUT": "true"}
    assert jobkit(ready, "publish", "--from", "-", stdin="\n".join(names)).returncode == 0
    _dead_letter_everything(ready)

    commands = [("status", "--json")] * 3 + [("dead", "list", "--json")] * 2
    program = str(Path(sys.executable).parent / "jobkit")
    readers = [
        subprocess.Popen([program, *command], env=ready, stdout=subprocess.PIPE, text=True)
        for command in commands
    ]
    outputs = [reader.communicate(timeout=120) for reader in readers]

    for command, reader, (out, _) in zip(commands, readers, outputs, strict=True):
        if command[0] == "status":
            assert reader.returncode == CommandExit.NEEDS_YOU, out
            counts = json.loads(out)["reconciliation"]
            assert (counts["dead_lettered"], counts["outstanding"]) == (300, [])
            assert counts["adds_up"] is True
        else:
            assert reader.returncode == 0, out
            assert len(json.loads(out)["dead_letters"]) == 300
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (0, 300)) == (0, 300)
