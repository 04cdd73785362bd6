"""Temporaries are removed once their owner has ended, and never while it runs: wherever the
process that looks runs (another PID namespace on the same host name) and whatever the clocks
say."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobkit_publisher.queue.publish import publish_items
from jobkit_worker.settings import Settings

# Makes a temporary file and a temporary directory in the directory given, dated two hours
# back (a host whose clock is behind), says so, and holds them until killed.
OWNER = """\
import os, sys, tempfile, time
from pathlib import Path
from jobkit_worker.scratch import owner_prefix
directory = Path(sys.argv[1])
prefix = owner_prefix(directory)
made = [tempfile.mkstemp(dir=directory, prefix=prefix)[1],
        tempfile.mkdtemp(dir=directory, prefix=prefix)]
for path in made:
    os.utime(path, (time.time() - 7200, time.time() - 7200))
print(" ".join(made), flush=True)
time.sleep(120)
"""
# Removes what is stale in the directory given, from a PID namespace of its own.
SWEEPER = [
    "unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
    sys.executable, "-c",
    "import sys; from pathlib import Path; "
    "from jobkit_worker.scratch import remove_stale; remove_stale(Path(sys.argv[1]))",
]  # fmt: skip


def _sweep(directory: Path) -> None:
    subprocess.run([*SWEEPER, str(directory)], check=True, timeout=60)


def test_a_process_that_cannot_see_the_owner_keeps_its_temporaries_until_it_ends(
    tmp_path: Path,
) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        made = [Path(path) for path in owner.stdout.readline().split()]
        assert len(made) == 2

        _sweep(tmp_path)

        assert all(path.exists() for path in made), "an owner's live temporaries were removed"
    finally:
        owner.kill()
        owner.wait(timeout=30)

    _sweep(tmp_path)

    assert os.listdir(tmp_path) == [], "an ended owner's temporaries were kept"


@pytest.mark.rabbitmq
def test_a_namespaced_worker_on_the_same_host_leaves_a_running_programs_input_alone(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    Path(settings.input_url, "a.txt").write_bytes(b"the input\n")
    publish_items(settings, ["a.txt"])
    started = tmp_path / "started"
    # Holds its input copy while the other worker starts, then copies it.
    program = f"touch {started}; sleep 3; cat $0 > $1/copy-a.txt"
    running = {**env, "TASK_COMMAND": shlex.join(["sh", "-c", program, "{input}", "{output_dir}"])}
    first = subprocess.Popen(
        [sys.executable, "-m", "jobkit_worker"],
        env=running,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline and first.poll() is None, "the program never started"
        time.sleep(0.05)

    # Another worker, as a container's entry point on this host's name, loads its program
    # task, which sweeps the scratch directory the two share; it finds the queue empty.
    swept = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
         sys.executable, "-m", "jobkit_worker"],
        env=running, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    _, err = first.communicate(timeout=60)

    assert swept.returncode == 0, swept.stderr
    assert first.returncode == 0, err
    assert Path(settings.output_url, "copy-a.txt").read_text() == "the input\n"
