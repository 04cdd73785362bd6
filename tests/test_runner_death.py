"""A runner that dies, or is stopped with its whole process group: its workers end with it,
giving back what they hold, and its account of them is right."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, jobkit, settled_depths

from jobkit_worker.broker import Session
from jobkit_worker.settings import Settings

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

_JOBKIT = str(Path(sys.executable).parent / "jobkit")
GOOD = "Datetime,Temperature\n2017-12-01 00:00:00,4.5\n"


def _job(env: dict[str, str], items: int, seconds: float) -> dict[str, str]:
    names = [f"item{index:02d}.csv" for index in range(items)]
    for name in names:
        Path(env["INPUT_URL"], name).write_text(GOOD)
    assert jobkit(env, "publish", *names).returncode == 0
    return {
        **env,
        "TASK": "slow_task:aggregate_slowly",
        "PYTHONPATH": str(ROOT / "tests"),
        "SLOW_SECONDS": str(seconds),
    }


def _run(job: dict[str, str], *args: str, under: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*under, _JOBKIT, "run", "--parallelism", "2", *args],
        env=job,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _done(job: dict[str, str]) -> int:
    return len(list(Path(job["OUTPUT_URL"]).glob("*.done.json")))


def _wait_for(condition: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


def _holders(job: dict[str, str]) -> int:
    with Session(Settings.from_env(job), "test") as session:
        return session.holders(job["QUEUE"])


def test_the_workers_of_a_killed_runner_stop_taking_items_and_give_back_what_they_hold(
    env: dict[str, str],
) -> None:
    job = _job(env, items=40, seconds=0.3)
    run = _run(job, "--drain")
    _wait_for(lambda: _done(job) >= 4)

    run.kill()  # SIGKILL: nothing of the runner's own runs
    run.wait(timeout=30)
    time.sleep(1)  # for the workers to end
    settled = _done(job)
    time.sleep(3)  # in which workers that went on would do 20 items

    assert _done(job) == settled < 40, "no item was taken once the runner was gone"
    _wait_for(lambda: _holders(job) == 0)
    assert _holders(job) == 0, "no worker holds an item"
    ready, dead = settled_depths(
        job["BROKER_URL"], job["QUEUE"], lambda depths: (settled + depths[0], depths[1]) == (40, 0)
    )
    assert (settled + ready, dead) == (40, 0), "every item is done or back in the queue"


def test_sigterm_to_the_whole_group_waits_for_the_workers_and_says_what_they_gave_back(
    env: dict[str, str],
) -> None:
    job = _job(env, items=3, seconds=60)
    run = _run(job, under=("timeout", "-s", "TERM", "600"))
    log = Path(".jobkit/run.log")
    _wait_for(lambda: log.exists() and log.read_text().count(" took ") >= 2)

    run.send_signal(signal.SIGTERM)  # timeout passes it to the whole group, as it does when due
    _, stderr = run.communicate(timeout=60)

    assert run.returncode == 128 + signal.SIGTERM, stderr
    assert "went back to the queue" in stderr and "no worker held" not in stderr, stderr
    assert stderr.count("item0") == 2, stderr
    assert settled_depths(job["BROKER_URL"], job["QUEUE"], (3, 0)) == (3, 0)


def _template(runner: int) -> int | None:
    """The runner's fork server: the template its workers are forked from."""
    for child in Path(f"/proc/{runner}/task/{runner}/children").read_text().split():
        if b"forkserver" in Path(f"/proc/{child}/cmdline").read_bytes():
            return int(child)
    return None


def test_the_runner_outlives_its_template_killed_while_it_starts_workers(
    env: dict[str, str],
) -> None:
    job = _job(env, items=30, seconds=0.05)
    run = _run(job)
    for _ in range(5):  # killed again and again, as the kernel's OOM killer would
        _wait_for(lambda: _template(run.pid) is not None, 30)
        template = _template(run.pid)
        if template is None or run.poll() is not None:
            break
        os.kill(template, signal.SIGKILL)
        time.sleep(0.3)
    out, err = run.communicate(timeout=180)

    assert "Aborted" not in out + err, out + err
    assert run.returncode == 0, out + err
    assert _done(job) == 30


def test_a_runner_that_cannot_start_workers_says_why_in_one_line_and_keeps_the_items(
    env: dict[str, str],
) -> None:
    job = _job(env, 4, 0)
    run = subprocess.run(
        ["sh", "-c", 'ulimit -n 16 && exec "$0" run --parallelism 2', _JOBKIT],
        env=job, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    (line,) = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert "open files" in line and "16" in line, line
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (4, 0)) == (4, 0)
