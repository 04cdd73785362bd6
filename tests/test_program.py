"""A program run per item as the task (TASK_COMMAND): stored, dead-lettered, retried, killed."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    dead_letter_reasons,
    jobkit,
    last_outcome,
    settled_depths,
    small_disk,
    worker,
)

from jobkit_publisher.queue.publish import publish_items
from jobkit_worker.broker import DELIVERY_LIMIT
from jobkit_worker.errors import ExitCode
from jobkit_worker.settings import Settings

pytestmark = pytest.mark.rabbitmq

SUCCEEDS = """\
import sys
from pathlib import Path
source, out = Path(sys.argv[1]), Path(sys.argv[2])
(out / "upper").mkdir()
(out / "upper" / source.name).write_bytes(source.read_bytes().upper())
(out / (source.name + ".size")).write_text(str(source.stat().st_size))
"""
FAILS = """\
import sys
for line in ("reading the input", "checking the header", sys.argv[2]):
    print(line, file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""
HANGS = """\
sleep 60 &
echo $! > "$1"
wait
"""
LEAVES_A_CHILD = """\
sleep 60 &
echo $! > "$1"
printf 'no header' >&2
exit 3
"""


def _command(env: dict[str, str], tmp_path: Path, script: str, *args: str) -> dict[str, str]:
    """`env` with TASK_COMMAND running `script` (Python, or shell for a .sh body) with `args`."""
    shell = script.startswith("sleep")  # HANGS is shell
    path = tmp_path / ("program.sh" if shell else "program.py")
    path.write_text(script)
    runner = "sh" if shell else sys.executable
    return {**env, "TASK_COMMAND": shlex.join([runner, str(path), *args])}


def _publish_file(settings: Settings, name: str = "notes.txt", data: bytes = b"abc") -> None:
    Path(settings.input_url, name).write_bytes(data)
    publish_items(settings, [name])


def test_a_program_exiting_0_has_every_file_it_wrote_stored_and_its_item_acked(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    _publish_file(settings)
    program = _command(env, tmp_path, SUCCEEDS, "{input}", "{output_dir}")

    result = worker(program)

    assert result.returncode == 0, result.stderr
    assert Path(settings.output_url, "upper", "notes.txt").read_bytes() == b"ABC"
    assert Path(settings.output_url, "notes.txt.size").read_text() == "3"
    record = json.loads(Path(settings.output_url, "notes.txt.done.json").read_text())
    assert sorted(record["outputs"]) == ["notes.txt.size", "upper/notes.txt"]
    assert settled_depths(settings.broker_url, settings.queue, (0, 0)) == (0, 0)


def test_a_program_exiting_3_dead_letters_its_item_with_its_last_standard_error_lines(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    _publish_file(settings)
    program = _command(env, tmp_path, FAILS, "3", "no header in {input}")

    result = worker(program)

    assert result.returncode == ExitCode.DEAD, result.stderr
    (reason,) = dead_letter_reasons(settings.broker_url, settings.queue)
    command = program["TASK_COMMAND"].replace("'", "")
    assert reason.startswith(f"notes.txt: '{command}' exited 3: reading the input | checking the")
    assert reason.endswith("/notes.txt"), reason


def test_a_program_given_only_its_item_runs_without_scratch_and_is_judged_the_same(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    publish_items(settings, ["job-7"])
    program = {**_command(env, tmp_path, FAILS, "3", "{item} is not a job"), "NO_INPUT": "true"}

    result = worker(program)

    assert result.returncode == ExitCode.DEAD, result.stderr
    (reason,) = dead_letter_reasons(settings.broker_url, settings.queue)
    assert reason.endswith("exited 3: reading the input | checking the header | job-7 is not a job")


def test_a_program_failing_while_a_child_it_left_keeps_its_output_open_is_judged_at_once(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    _publish_file(settings)
    pid_file = tmp_path / "child.pid"
    program = _command(env, tmp_path, LEAVES_A_CHILD, str(pid_file))

    result = worker({**program, "TASK_TIMEOUT_SECONDS": "40"})

    assert result.returncode == ExitCode.DEAD, result.stderr
    (reason,) = dead_letter_reasons(settings.broker_url, settings.queue)
    assert reason.endswith("exited 3: no header"), reason  # its last line, without a newline
    _assert_ended(int(pid_file.read_text()))


def _assert_ended(pid: int) -> None:
    """`pid` has ended (killed with its group), or ends within a few seconds."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"process {pid} was left running")


# Each way a worker waits for what a program leaves in the background: on its own; as init,
# which the child's end leaves a zombie of; and in a run, whose template would otherwise take
# the child for a dead worker's and kill it.
WAITS = {
    "alone": [],
    "as init": ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"],
    "in a run": ["run", "--parallelism", "2"],
    "in a drained run": ["run", "--parallelism", "2", "--drain"],
}


@pytest.mark.parametrize("start", WAITS)
def test_what_a_background_child_writes_after_its_program_exited_0_is_stored(
    env: dict[str, str], settings: Settings, start: str
) -> None:
    items = ["a.txt", "b.txt"]
    for name in items:
        Path(settings.input_url, name).write_bytes(b"x")
    publish_items(settings, items)
    # The child lets go of the program's output at once: only its process group shows it.
    late = "(sleep 2; echo late > $0/late-$1) > /dev/null 2>&1 & echo early > $0/early-$1"
    program = {**env, "TASK_COMMAND": shlex.join(["sh", "-c", late, "{output_dir}", "{item}"])}

    argv = WAITS[start]
    if argv[:1] == ["run"]:
        results = [jobkit(program, *argv)]
    else:
        alone = [*argv, sys.executable, "-m", "jobkit_worker"]
        results = [subprocess.run(alone, env=program, capture_output=True, text=True, timeout=60)
                   for _ in items]  # fmt: skip

    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
    for name in items:
        assert Path(settings.output_url, f"late-{name}").read_text() == "late\n"
        record = json.loads(Path(settings.output_url, f"{name}.done.json").read_text())
        assert sorted(record["outputs"]) == [f"early-{name}", f"late-{name}"]


@pytest.mark.parametrize(
    ("make", "what"),
    [
        ("ln -s /etc/passwd $0/link", "link (a symbolic link)"),
        ("mkfifo $0/pipe", "pipe (not a regular file)"),
        ("mkdir $0/empty", "empty (an empty directory)"),
    ],
)
def test_an_output_no_store_keeps_dead_letters_its_item_naming_it(
    env: dict[str, str], settings: Settings, make: str, what: str
) -> None:
    _publish_file(settings)
    program = {**env, "TASK_COMMAND": shlex.join(["sh", "-c", make, "{output_dir}"])}

    result = worker(program)

    assert result.returncode == ExitCode.DEAD, result.stderr
    (reason,) = dead_letter_reasons(settings.broker_url, settings.queue)
    assert f"the program left {what} in {{output_dir}}" in reason, reason


def test_a_program_runs_in_its_own_directory_and_what_it_writes_there_is_never_lost(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    Path(settings.input_url, "a.txt").write_bytes(b"a")
    Path(settings.input_url, "b.txt").write_bytes(b"b")
    publish_items(settings, ["a.txt", "b.txt"])
    stores = {**env, "TASK_COMMAND": "sh -c 'echo kept > here.txt' {output_dir}"}
    loses = {**env, "TASK_COMMAND": "sh -c 'echo lost > here.txt' {item}"}

    kept, refused = worker(stores), worker(loses)

    assert kept.returncode == 0, kept.stderr
    assert Path(settings.output_url, "here.txt").read_text() == "kept\n"
    assert refused.returncode == ExitCode.DEAD, refused.stderr
    (reason,) = dead_letter_reasons(settings.broker_url, settings.queue)
    assert "b.txt: the program wrote here.txt in its working directory" in reason, reason
    assert not (tmp_path / "here.txt").exists()  # where the worker was started


def test_a_program_exiting_1_is_retried_until_the_delivery_limit_dead_letters_it(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    _publish_file(settings)
    program = _command(env, tmp_path, FAILS, "1", "disk full")

    codes = [worker(program).returncode for _ in range(DELIVERY_LIMIT + 1)]

    assert codes == [ExitCode.RETRY] * DELIVERY_LIMIT + [ExitCode.DEAD]
    (reason,) = dead_letter_reasons(settings.broker_url, settings.queue)
    assert reason.startswith(f"failed {DELIVERY_LIMIT + 1} times, last: notes.txt: ")
    assert reason.endswith("exited 1: reading the input | checking the header | disk full")


def test_a_program_running_past_the_timeout_is_killed_with_its_children_and_retried(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    _publish_file(settings)
    pid_file = tmp_path / "child.pid"
    program = _command(env, tmp_path, HANGS, str(pid_file))

    result = worker({**program, "TASK_TIMEOUT_SECONDS": "0.5"})

    assert result.returncode == ExitCode.RETRY, result.stderr
    assert "ran longer than TASK_TIMEOUT_SECONDS (0.5 s) and was killed" in str(
        last_outcome(result)["reason"]
    )
    assert settled_depths(settings.broker_url, settings.queue, (1, 0)) == (1, 0)
    assert not _alive(int(pid_file.read_text())), "the program's child was killed too"


# Sleeps the first time, so that its worker can be killed meanwhile; ends at once after.
SLEEPS_ONCE = """\
import sys, time
from pathlib import Path
marker = Path(sys.argv[1])
if not marker.exists():
    marker.write_text("started")
    time.sleep(60)
"""
JOBKIT = str(Path(sys.executable).parent / "jobkit")
WORKER = [sys.executable, "-m", "jobkit_worker"]
# Each way a worker runs a program, which must end with a killed worker: a worker of its own
# (a parent-death signal), a container's entry point (the init of a PID namespace), and a
# worker of `jobkit run` (its template reaps what a dead worker leaves).
STARTS = {
    "alone": WORKER,
    "as init": ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *WORKER],
    "in a run": [JOBKIT, "run", "--parallelism", "1"],
}


@pytest.mark.parametrize("start", STARTS)
def test_a_program_dies_with_a_worker_killed_while_it_runs(
    env: dict[str, str], settings: Settings, tmp_path: Path, start: str
) -> None:
    _publish_file(settings)
    marker = tmp_path / "started"
    program = _command(env, tmp_path, SLEEPS_ONCE, str(marker))
    script = shlex.split(program["TASK_COMMAND"])[1]
    started = subprocess.Popen(
        STARTS[start], env=program, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while not marker.exists() or not _running(script):
        assert time.monotonic() < deadline, "the program never started"
        time.sleep(0.05)
    (sleeping,) = _running(script)

    os.kill(_parent(sleeping), signal.SIGKILL)  # its worker

    deadline = time.monotonic() + 30
    while sleeping in _running(script):
        assert time.monotonic() < deadline, "the program outlived its worker"
        time.sleep(0.05)
    code = started.wait(timeout=60)  # a run tries the item again, which then ends at once
    assert code == 0 if start == "in a run" else code != 0


def _running(token: str) -> list[int]:
    """The processes running now (not zombies) with `token` in their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if token.encode() not in (entry / "cmdline").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError):
            continue
        if state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_program_that_cannot_be_found_is_exit_2_with_no_message_taken(
    env: dict[str, str], settings: Settings
) -> None:
    _publish_file(settings)

    result = worker(env, "--command", "no-such-program {input} {output_dir}")

    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert "no program 'no-such-program' found" in result.stderr
    assert settled_depths(settings.broker_url, settings.queue, (1, 0)) == (1, 0)


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent to reap it is not running)."""
    deadline = time.monotonic() + 5  # init reaps the orphan soon after its kill
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


def test_a_full_scratch_disk_gives_the_item_back_without_spending_a_delivery(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    Path(env["INPUT_URL"], "big.txt").write_bytes(b"x" * 200_000)  # more than the scratch holds
    publish_items(settings, ["big.txt"])
    with small_disk(tmp_path / "tmp", "64k") as full:
        result = worker({**env, "TMPDIR": str(full), "TASK_COMMAND": "cat {input}"})

    assert result.returncode == ExitCode.RETRY, result.stderr
    assert "no room for its files" in last_outcome(result)["reason"]  # type: ignore[operator]
    assert settled_depths(settings.broker_url, settings.queue, (1, 0)) == (1, 0)


def test_a_program_that_removes_its_output_directory_fails_its_attempt_naming_it(
    env: dict[str, str], settings: Settings
) -> None:
    _publish_file(settings)
    removes = "echo result > $0/r.txt && rm -r $0"
    program = {**env, "TASK_COMMAND": shlex.join(["sh", "-c", removes, "{output_dir}"])}

    result = worker(program)

    assert result.returncode == ExitCode.RETRY, result.stderr
    assert "{output_dir} (" in result.stderr and "was removed while the program ran" in (
        result.stderr
    ), result.stderr
    assert not Path(settings.output_url, "notes.txt.done.json").exists()


def test_what_a_program_writes_beside_its_input_is_stored_as_an_output(
    env: dict[str, str], settings: Settings
) -> None:
    Path(settings.input_url, "a").mkdir()
    Path(settings.input_url, "a", "x.txt").write_bytes(b"compress me\n" * 100)
    publish_items(settings, ["a/x.txt"])
    program = {**env, "TASK_COMMAND": "gzip -k {input}"}

    result = worker(program)

    assert result.returncode == 0, result.stderr
    stored = Path(settings.output_url, "a", "x.txt.gz")
    assert subprocess.run(["gzip", "-dc", str(stored)], capture_output=True).stdout == (
        b"compress me\n" * 100
    )
    record = json.loads(Path(settings.output_url, "a", "x.txt.done.json").read_text())
    assert list(record["outputs"]) == ["a/x.txt.gz"]


def test_one_name_written_beside_the_input_and_in_the_output_directory_dead_letters_it(
    env: dict[str, str], settings: Settings
) -> None:
    _publish_file(settings)
    both = "echo a > $(dirname $0)/r.txt; echo b > $1/r.txt"
    program = {**env, "TASK_COMMAND": shlex.join(["sh", "-c", both, "{input}", "{output_dir}"])}

    result = worker(program)

    assert result.returncode == ExitCode.DEAD, result.stderr
    (reason,) = dead_letter_reasons(settings.broker_url, settings.queue)
    assert "the program wrote r.txt both in {output_dir} and beside {input}" in reason, reason
