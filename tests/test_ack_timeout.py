"""RabbitMQ's delivery acknowledgement timeout (consumer_timeout): a worker that held its item
too long is told so by name, stops its task and gives way. A private node whose timeout is
seconds, checked twice a second; bounded in time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from conftest import jobkit, settled_depths, worker
from private_broker import PrivateBroker

from jobkit_worker.broker import WORKER_HEARTBEAT_SECONDS, connection_parameters
from jobkit_worker.errors import ExitCode
from jobkit_worker.settings import Settings

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.rabbitmq4]

LIMIT_MS = 2000
# A program nothing else runs (the RabbitMQ 4 pass runs this test at the same time), found by
# its command line.
PROGRAM = f"sleep 47.{uuid.uuid4().int % 10**6:06d}"


@pytest.fixture(scope="module")
def node() -> Iterator[PrivateBroker]:
    # 3.10 checks the timeout on its channel tick, once a minute unless told otherwise.
    broker = PrivateBroker(
        [f"consumer_timeout = {LIMIT_MS}"], "[{rabbit, [{channel_tick_interval, 500}]}]."
    )
    broker.start()
    yield broker
    broker.remove()


def test_a_worker_past_the_acknowledgement_timeout_names_it_and_stops_its_program(
    node: PrivateBroker, env: dict[str, str]
) -> None:
    job = {
        **env,
        "BROKER_URL": node.url,
        "TASK_COMMAND": PROGRAM,
        "NO_INPUT": "true",
        "TASK_TIMEOUT_SECONDS": "30",  # below the 1,800 s the kit is told; the broker says 2
    }
    assert jobkit(job, "publish", "slow-item").returncode == 0

    result = worker(job, timeout=40)

    assert result.returncode == ExitCode.RETRY, result.stderr
    assert (
        "slow-item took longer than the broker's acknowledgement timeout (consumer_timeout)"
    ) in result.stdout, result.stdout
    assert "Lost the connection" not in result.stdout + result.stderr
    running = subprocess.run(["pgrep", "-f", PROGRAM], capture_output=True, text=True)
    assert running.stdout == "", "the program runs on after its item was taken back"
    assert settled_depths(node.url, job["QUEUE"], (1, 0)) == (1, 0), "the item did not go back"


def test_a_task_timeout_not_below_the_brokers_is_refused_before_any_item_is_taken(
    node: PrivateBroker, env: dict[str, str]
) -> None:
    job = {**env, "BROKER_URL": node.url, "TASK_COMMAND": PROGRAM, "NO_INPUT": "true"}
    assert jobkit(job, "publish", "an-item").returncode == 0
    job["TASK_TIMEOUT_SECONDS"] = "2400"

    result = jobkit(job, "run")

    assert result.returncode == ExitCode.CONFIG, result.stdout + result.stderr
    assert (
        "TASK_TIMEOUT_SECONDS (2400 s) is not below the broker's acknowledgement timeout "
        "(1800 s, BROKER_ACK_TIMEOUT_SECONDS)"
    ) in result.stderr
    assert settled_depths(node.url, job["QUEUE"], (1, 0)) == (1, 0)


def test_a_frozen_worker_loses_its_item_while_frozen_and_says_it_did_not_run(
    node: PrivateBroker, env: dict[str, str]
) -> None:
    # Heartbeats of 4 s, for a short test (the kit's own are 20 s): RabbitMQ takes the item
    # back from a worker that answers none, where 3.10's acknowledgement timeout does not.
    url = f"{node.url}?heartbeat=4"
    job = {**env, "BROKER_URL": url, "TASK_COMMAND": PROGRAM, "NO_INPUT": "true",
           "TASK_TIMEOUT_SECONDS": "120"}  # fmt: skip
    assert jobkit(job, "publish", "frozen-item").returncode == 0
    frozen = subprocess.Popen(
        [sys.executable, "-m", "jobkit_worker"], env=job, stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not subprocess.run(["pgrep", "-f", PROGRAM], capture_output=True).stdout:
        assert time.monotonic() < deadline, "the program never started"
        time.sleep(0.1)

    os.kill(frozen.pid, signal.SIGSTOP)  # a suspended laptop, a debugger
    try:
        assert settled_depths(url, job["QUEUE"], (1, 0)) == (1, 0), "the item stayed held"
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    stdout, _ = frozen.communicate(timeout=60)

    assert frozen.returncode == ExitCode.RETRY, stdout
    assert "frozen-item: this worker did not run for " in stdout, stdout
    assert "raise consumer_timeout" not in stdout


def test_a_workers_connection_has_heartbeats_unless_the_url_sets_them(
    env: dict[str, str],
) -> None:
    settings = Settings.from_env({**env, "BROKER_URL": "amqp://u:p@127.0.0.1:1/%2F"})
    given = Settings.from_env({**env, "BROKER_URL": "amqp://u:p@127.0.0.1:1/%2F?heartbeat=7"})

    assert connection_parameters(settings, "worker")[0].heartbeat == WORKER_HEARTBEAT_SECONDS
    assert connection_parameters(given, "worker")[0].heartbeat == 7
