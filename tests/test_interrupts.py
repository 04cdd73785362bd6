"""Ctrl-C and SIGTERM during `jobkit run`: the workers stop, give their items back without
spending a delivery, leave nothing running and nothing behind, and one line says so."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import jobkit, settled_depths

from jobkit_publisher.run.record import run_record_name
from jobkit_worker.broker import DELIVERY_LIMIT

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

# Copies its input once a file "go" exists beside it; until then it waits, with a child of its
# own in the background, as long-running programs do.
PROGRAM = """\
here=$(dirname "$0")
if [ ! -e "$here/go" ]; then
    sleep 60 &
    sleep 60
fi
cp "$1" "$2/"
"""
ITEMS = ["a.txt", "b.txt", "c.txt"]


@pytest.fixture
def job(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Three items published, and a task that holds each until told to go."""
    program = tmp_path / "program.sh"
    program.write_text(PROGRAM)
    for name in ITEMS:
        Path(env["INPUT_URL"], name).write_text(name)
    assert jobkit(env, "publish", *ITEMS).returncode == 0
    return {**env, "TASK_COMMAND": shlex.join(["sh", str(program), "{input}", "{output_dir}"])}


def _start_run(job: dict[str, str]) -> subprocess.Popen[str]:
    """`jobkit run` in a session of its own, as a shell runs a job in a terminal."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "jobkit"), "run", "--parallelism", "2"],
        env=job,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_until_two_items_are_held(log: Path) -> None:
    deadline = time.monotonic() + 60
    while not log.exists() or log.read_text().count(" took ") < 2:
        assert time.monotonic() < deadline, "the workers never took their items"
        time.sleep(0.05)
    time.sleep(0.5)  # the programs have started


def _session_processes(session: int) -> list[str]:
    """The processes of the run's session still running (ended ones await only their reaping)."""
    listed = subprocess.run(["ps", "-o", "pid=,args=", "-s", str(session)], capture_output=True)
    return [line for line in listed.stdout.decode().splitlines() if "<defunct>" not in line]


def _ended(run: subprocess.Popen[str], log: Path) -> tuple[str, str]:
    """What the stopped run printed, once it ended; failing with what still runs in its
    session and the end of its log when it has not in 120 s."""
    try:
        return run.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        left = _session_processes(run.pid)
        os.killpg(run.pid, signal.SIGKILL)
        tail = log.read_text()[-3000:] if log.exists() else ""
        pytest.fail(f"the run did not end; still running: {left}; its log ends: {tail}")


def _scratch() -> set[str]:
    scratch = Path(tempfile.gettempdir(), "jobkit-scratch")
    return {path.name for path in scratch.iterdir()} if scratch.is_dir() else set()


def test_ctrl_c_stops_everything_and_gives_the_items_back_without_spending_deliveries(
    job: dict[str, str], tmp_path: Path
) -> None:
    scratch_before = _scratch()
    log = tmp_path / ".jobkit" / "run.log"
    for _ in range(DELIVERY_LIMIT + 1):  # more interrupts than an item has deliveries
        log.unlink(missing_ok=True)
        run = _start_run(job)
        _wait_until_two_items_are_held(log)

        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        stdout, stderr = _ended(run, log)

        assert run.returncode == 130, stdout + stderr
        (line,) = [line for line in stderr.splitlines() if "Interrupted" in line]
        assert line.startswith("Interrupted by SIGINT: the workers stopped; "), stderr
        assert "went back to the queue" in line and "jobkit run' again" in line, line
        time.sleep(0.5)
        assert _session_processes(run.pid) == [], "a worker, program or child outlived the run"
        assert _scratch() <= scratch_before, "an interrupted item's scratch copy was left"
        assert settled_depths(job["BROKER_URL"], job["QUEUE"], (3, 0)) == (3, 0)

    (tmp_path / "go").touch()
    finished = jobkit(job, "run", "--parallelism", "2", "--json")

    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert sorted(Path(job["OUTPUT_URL"], name).read_text() for name in ITEMS) == ITEMS
    assert settled_depths(job["BROKER_URL"], job["QUEUE"], (0, 0)) == (0, 0), (
        "nothing was dead-lettered"
    )


def test_sigterm_to_the_runner_alone_does_the_same_and_leaves_no_process_behind(
    job: dict[str, str], tmp_path: Path
) -> None:
    run = _start_run(job)
    _wait_until_two_items_are_held(tmp_path / ".jobkit" / "run.log")

    run.terminate()  # what a CI runner or systemd sends, to the runner's process only
    stdout, stderr = _ended(run, tmp_path / ".jobkit" / "run.log")

    assert run.returncode == 128 + signal.SIGTERM, stdout + stderr
    assert "Interrupted by SIGTERM: the workers stopped; " in stderr, stderr
    time.sleep(0.5)
    assert _session_processes(run.pid) == [], "the fork server or a worker kept running"
    assert settled_depths(job["BROKER_URL"], job["QUEUE"], (3, 0)) == (3, 0)


def test_a_hang_up_of_the_whole_session_leaves_workers_and_programs_going_to_the_end(
    job: dict[str, str], tmp_path: Path
) -> None:
    run = _start_run(job)
    _wait_until_two_items_are_held(tmp_path / ".jobkit" / "run.log")

    os.killpg(run.pid, signal.SIGHUP)  # a closed terminal, or ssh, hangs up its session
    time.sleep(1)  # what the hang-up would end has ended by now
    (tmp_path / "go").touch()
    stdout, stderr = run.communicate(timeout=120)

    assert run.returncode == 0, stdout + stderr
    record = json.loads((tmp_path / ".jobkit" / run_record_name(job["QUEUE"])).read_text())
    assert record["report"]["failures"] == [], record["report"]
    assert sorted(record["report"]["done"]) == ITEMS


@pytest.mark.parametrize(
    "signum", [signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM], ids=str
)
def test_any_other_signal_that_would_end_the_run_stops_it_in_order_and_records_it(
    job: dict[str, str], tmp_path: Path, signum: signal.Signals
) -> None:
    run = _start_run(job)
    _wait_until_two_items_are_held(tmp_path / ".jobkit" / "run.log")

    os.killpg(run.pid, signum)  # Ctrl-\, or a supervisor's signal, to the whole group
    stdout, stderr = _ended(run, tmp_path / ".jobkit" / "run.log")

    assert run.returncode == 128 + signum, stdout + stderr
    assert f"Interrupted by {signum.name}: the workers stopped; " in stderr, stderr
    time.sleep(0.5)
    assert _session_processes(run.pid) == [], "a worker, program or child outlived the run"
    assert settled_depths(job["BROKER_URL"], job["QUEUE"], (3, 0)) == (3, 0)
    record = json.loads((tmp_path / ".jobkit" / run_record_name(job["QUEUE"])).read_text())
    assert record["report"]["stopped"] == f"interrupted by {signum.name}", record["report"]
    assert record["report"]["exit_code"] == 128 + signum
