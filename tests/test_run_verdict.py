"""A run's exit status is its verdict's, whatever ends it: the words at its end and the code a
script reads never disagree, and a run cut short still leaves its account."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pika
import pytest
from conftest import jobkit

from jobkit_publisher.cli.exits import CommandExit
from jobkit_publisher.run.record import run_record_name

pytestmark = pytest.mark.rabbitmq

JOBKIT = str(Path(sys.executable).parent / "jobkit")


def _publish(env: dict[str, str], *names: str) -> dict[str, str]:
    job = {**env, "NO_INPUT": "true"}
    assert jobkit(job, "publish", *names).returncode == 0
    return job


def test_a_run_after_dead_letters_were_purged_exits_as_status_does_not_0(
    env: dict[str, str],
) -> None:
    job = _publish(env, "a", "b", "c")
    dead = jobkit(job, "run", "--parallelism", "2", "--command", "sh -c 'exit 3'")
    assert dead.returncode == CommandExit.NEEDS_YOU, dead.stdout + dead.stderr
    assert jobkit(job, "purge", "--yes", "--dead").returncode == 0

    again = jobkit(job, "run", "--parallelism", "2", "--command", "true")
    status = jobkit(job, "status")

    assert "Not all accounted for" in again.stdout, again.stdout
    assert again.returncode == CommandExit.UNACCOUNTED, again.stdout + again.stderr
    assert status.returncode == again.returncode, status.stdout


def test_a_run_whose_queue_is_deleted_under_it_still_says_what_it_did_and_records_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    job = _publish(env, "first", "second")
    # The first item is done at once; the second waits until the queue is gone.
    waits = f"sh -c 'if [ $0 = second ]; then while [ ! -e {go} ]; do sleep 0.1; done; fi' {{item}}"
    run = subprocess.Popen(
        [JOBKIT, "run", "--parallelism", "1", "--command", waits],
        env=job,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = tmp_path / ".jobkit" / "run.log"
    deadline = time.monotonic() + 60
    while not log.exists() or "second" not in log.read_text():
        assert time.monotonic() < deadline and run.poll() is None, "the second was never taken"
        time.sleep(0.05)

    connection = pika.BlockingConnection(pika.URLParameters(env["BROKER_URL"]))
    connection.channel().queue_delete(env["QUEUE"])
    connection.close()
    go.touch()
    stdout, stderr = run.communicate(timeout=120)

    assert run.returncode not in (0, None), stdout + stderr
    assert "Stopped early: cut short:" in stdout, stdout + stderr
    assert "Traceback" not in stderr, stderr
    record = json.loads((tmp_path / ".jobkit" / run_record_name(env["QUEUE"])).read_text())
    assert "first" in record["report"]["done"], record["report"]
    assert record["report"]["stopped"].startswith("cut short:"), record["report"]
    assert record["report"]["exit_code"] == run.returncode
