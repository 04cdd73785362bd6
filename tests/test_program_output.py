"""What a program per item prints and writes, however much: relayed, bounded, stored whole."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import dead_letter_reasons, worker

from jobkit_publisher.queue.publish import publish_items
from jobkit_worker.errors import ExitCode
from jobkit_worker.settings import Settings

pytestmark = pytest.mark.rabbitmq

LINES = 4_000_000
MANY = """\
import sys
from pathlib import Path
for index in range(int(sys.argv[1])):
    Path(sys.argv[2], f"part{index:05d}.txt").write_text(str(index))
"""
# The first item writes a big output; the second reads its worker's peak memory so far.
BIG_THEN_PEAK = """\
if [ "$1" = big ]; then head -c 300000000 /dev/zero > "$2/big.bin"
else grep VmHWM "/proc/$PPID/status" > "$2/peak.txt"; fi
"""


def _no_input(env: dict[str, str], command: str, **more: str) -> dict[str, str]:
    return {**env, "NO_INPUT": "true", "TASK_COMMAND": command, **more}


def test_a_program_printing_millions_of_lines_is_done_and_its_log_keeps_both_ends(
    env: dict[str, str], settings: Settings
) -> None:
    publish_items(settings, ["count"])
    # A line at a time, the log took 10 minutes for these: the program was killed at 60 s.
    program = _no_input(env, f"seq 1 {LINES}", TASK_TIMEOUT_SECONDS="60")

    result = worker(program, timeout=120)

    assert result.returncode == ExitCode.DONE, result.stderr[-2000:]
    log = result.stderr
    assert "program stdout: 1\nprogram stdout: 2\n" in log
    assert f"program stdout: {LINES - 1}\nprogram stdout: {LINES}\n" in log
    assert "left out of the log" in log
    # Its 29 MB kept to TASK_LOG_BYTES, each short line with its stream's name before it.
    assert len(log.encode()) < 4 * Settings().task_log_bytes


def test_a_program_failing_after_much_standard_error_gives_its_last_lines_as_the_reason(
    env: dict[str, str], settings: Settings
) -> None:
    publish_items(settings, ["count"])
    program = _no_input(env, f"sh -c 'seq 1 {LINES} >&2; exit 3'", TASK_TIMEOUT_SECONDS="60")

    result = worker(program, timeout=120)

    assert result.returncode == ExitCode.DEAD, result.stderr[-2000:]
    (reason,) = dead_letter_reasons(settings.broker_url, settings.queue)
    assert reason.endswith(" | ".join(str(line) for line in range(LINES - 4, LINES + 1)))


def test_an_item_with_thousands_of_outputs_has_each_stored_and_named_in_its_record(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    script = tmp_path / "many.py"
    script.write_text(MANY)
    publish_items(settings, ["parts"])
    program = _no_input(env, f"{sys.executable} {script} 3000 {{output_dir}}")

    result = worker(program)

    assert result.returncode == ExitCode.DONE, result.stderr[-2000:]
    stored = sorted(Path(settings.output_url).glob("part*.txt"))
    assert [path.read_text() for path in stored] == [str(index) for index in range(3000)]
    record = json.loads(Path(settings.output_url, "parts.done.json").read_text())
    assert len(record["outputs"]) == 3000


@pytest.mark.slow
def test_a_big_output_is_stored_whole_without_the_worker_holding_it_in_memory(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    script = tmp_path / "big.sh"
    script.write_text(BIG_THEN_PEAK)
    publish_items(settings, ["big", "peak"])
    program = _no_input(env, f"sh {script} {{item}} {{output_dir}}")

    result = worker(program, "--drain", timeout=300)

    assert result.returncode == ExitCode.DONE, result.stderr[-2000:]
    assert Path(settings.output_url, "big.bin").stat().st_size == 300_000_000
    peak_kib = int(Path(settings.output_url, "peak.txt").read_text().split()[1])
    assert peak_kib < 200_000, f"the worker's peak was {peak_kib} KiB"
