"""A run's exit status is its verdict's, whatever ends it: the words at its end and the code a
script reads never disagree, and a run cut short still leaves its account."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pika
import pytest
from conftest import jobkit, status_counts

from jobkit_publisher.cli.exits import CommandExit
from jobkit_publisher.run.local import LocalRunner
from jobkit_publisher.run.record import run_record_name
from jobkit_worker.settings import Settings

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
    # The second waits until the queue is gone.
    waits = f"sh -c 'if [ $0 = second ]; then while [ ! -e {go} ]; do sleep 0.1; done; fi' {{item}}"
    run = subprocess.Popen(
        # Draining: no worker started ahead declares the queue again as it starts.
        [JOBKIT, "run", "--parallelism", "1", "--drain", "--command", waits],
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
    assert record["report"]["stopped"].startswith("cut short:"), record["report"]
    assert record["report"]["exit_code"] == run.returncode


def test_two_runs_of_one_queue_end_with_its_last_item_not_with_their_completions(
    env: dict[str, str],
) -> None:
    names = "\n".join(f"item-{n}" for n in range(16))
    job = {**env, "NO_INPUT": "true"}
    assert jobkit(job, "publish", "--from", "-", stdin=names).returncode == 0
    command = [JOBKIT, "run", "--parallelism", "2", "--json", "--command", "sleep 0.2"]
    runs = [subprocess.Popen(command, env=job, stdout=subprocess.PIPE, text=True) for _ in range(2)]

    reports = [json.loads(run.communicate(timeout=120)[0]) for run in runs]

    assert sum(len(report["done"]) for report in reports) == 16, reports
    for report in reports:
        # Each of its workers finds the queue empty at most once before the run sees it.
        assert report["empty"] <= 2 * 2, report
    # One that ends while the other's workers hold items says not finished, as status would.
    assert {report["exit_code"] for report in reports} <= {0, 1}, reports
    assert status_counts(job)["done"] == 16


def test_a_run_from_a_directory_it_cannot_write_to_is_one_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    job = _publish(env, "a")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / ".jobkit").write_text("")  # a file where the log's directory would go

    result = subprocess.run(
        [JOBKIT, "run", "--command", "true"], env=job, cwd=locked, capture_output=True, text=True
    )

    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "Cannot write the workers' log .jobkit/run.log" in line, line


def test_a_clock_step_during_a_run_moves_nothing_on_its_timeline(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = {**_publish(env, "a", "b", "c", "d"), "TASK_COMMAND": "sleep 0.2"}
    runner = LocalRunner(Settings.from_env(job), 2, None, 6, tmp_path / "run.log")
    real, calls = time.time, itertools.count()
    # The wall clock steps an hour ahead after its first reading (an NTP correction, say).
    monkeypatch.setattr(time, "time", lambda: real() + (3600 if next(calls) else 0))

    report = runner.run()
    monkeypatch.undo()

    assert sorted(report.done) == ["a", "b", "c", "d"]
    times = [moment for attempt in report.attempts
             for moment in (attempt.spawned, attempt.took, attempt.finished) if moment]  # fmt: skip
    assert max(times) - min(times) <= report.seconds + 1, report.attempts
