"""`jobkit run` whose display goes wrong: a closed pipe, a full disk (a hung-up terminal: in
test_interrupts). The work goes on to its end, the run record is written and the exit code is
the work's."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import jobkit, small_disk

from jobkit_publisher.run.local import LOG_ROTATE_BYTES
from jobkit_publisher.run.record import run_record_name

pytestmark = pytest.mark.rabbitmq

JOBKIT = str(Path(sys.executable).parent / "jobkit")
ITEMS = 8


@pytest.fixture
def job(env: dict[str, str]) -> dict[str, str]:
    """ITEMS items published, each a program that takes a moment."""
    job = {**env, "NO_INPUT": "true"}
    names = "\n".join(f"item-{n}" for n in range(ITEMS))
    assert jobkit(job, "publish", "--from", "-", stdin=names).returncode == 0
    return job


def _run(job: dict[str, str], **streams: object) -> subprocess.Popen[bytes]:
    command = [JOBKIT, "run", "--parallelism", "2", "--command", "sleep 0.3"]
    return subprocess.Popen(command, env=job, **streams)  # type: ignore[call-overload,no-any-return]


def _recorded_done(job: dict[str, str], run_dir: Path | None = None) -> int:
    record = (run_dir or Path(".jobkit")) / run_record_name(job["QUEUE"])
    return len(json.loads(record.read_text())["report"]["done"])


def test_a_pipe_closed_by_its_reader_stops_the_display_not_the_work(job: dict[str, str]) -> None:
    run = _run(job, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert run.stdout is not None and run.stderr is not None
    run.stdout.readline()  # as `jobkit run | head -1` reads
    run.stdout.close()

    assert run.wait(timeout=120) == 0
    said = run.stderr.read().decode()
    assert "Traceback" not in said, said
    assert _recorded_done(job) == ITEMS


def test_a_full_disk_for_the_output_is_one_line_and_the_works_exit_code(
    job: dict[str, str],
) -> None:
    with open("/dev/full", "wb") as full:
        run = _run(job, stdout=full, stderr=subprocess.PIPE)
        _, said = run.communicate(timeout=120)

    assert run.returncode == 0, said
    assert b"Traceback" not in said, said
    assert b"No space left on device" in said, said
    assert _recorded_done(job) == ITEMS


def test_a_full_log_directory_is_said_in_one_line_after_the_work(
    job: dict[str, str], tmp_path: Path
) -> None:
    with small_disk(tmp_path / "full", "4k") as full:
        (full / "filler").write_bytes(b"x" * 4096)
        result = jobkit(job, "run", "--command", "true", "--log-file", str(full / "run.log"))

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "No space left" in line]
    assert str(full) in line, line
    assert f"{ITEMS} done" in result.stdout, result.stdout


def test_ctrl_c_after_the_work_ended_says_how_to_see_it(env: dict[str, str]) -> None:
    assert jobkit(env, "data", "--files", "24", "--rows", "3000").returncode == 0
    assert jobkit(env, "publish").returncode == 0
    run = subprocess.Popen(
        [JOBKIT, "run", "--parallelism", "2", "--drain", "--report"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert run.stdout is not None
    for line in run.stdout:
        if line.startswith("All accounted for"):  # the run is over: the report comes next
            run.send_signal(signal.SIGINT)
            break
    _, said = run.communicate(timeout=120)

    assert run.returncode == 130, said
    assert "Interrupted after the work ended" in said, said
    assert "jobkit report' writes the report" in said


def test_a_workers_log_grown_past_its_limit_is_moved_aside_and_a_new_one_begun(
    job: dict[str, str],
) -> None:
    log = Path(".jobkit", "run.log")
    log.parent.mkdir()
    with log.open("wb") as grown:  # as big as a long batch leaves it, without the disk it takes
        grown.truncate(LOG_ROTATE_BYTES + 1)

    assert _run(job).wait(timeout=120) == 0

    assert Path(".jobkit", "run.log.1").stat().st_size == LOG_ROTATE_BYTES + 1
    assert log.stat().st_size < LOG_ROTATE_BYTES
    assert "acked item-" in log.read_text()
