"""A program per item against the tools a user would pick instead (GNU parallel, xargs), and
what a program's output costs: many lines, many files, one big file.

Every peer runs two at a time on the same items in the same run. GNU parallel keeps its
`--joblog`, its ledger, as the kit keeps its success records.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench.figures import JOBKIT, Figure
from bench.harness import Bench, python, run_process, seconds

LINES = 4_000_000
OUTPUTS, PLAIN_OUTPUTS = 10_000, 2_000
BIG_BYTES = 1_000_000_000
WRITE_MANY = """\
import sys
from pathlib import Path
for index in range(int(sys.argv[1])):
    Path(sys.argv[2], f"part{index:05d}.txt").write_text(str(index))
"""
# The first item writes a big output; the second reads its worker's peak memory so far.
BIG_THEN_PEAK = f"""\
if [ "$1" = big ]; then head -c {BIG_BYTES} /dev/zero > "$2/big.bin"
else grep VmHWM "/proc/$PPID/status" > "$2/peak.txt"; fi
"""


def against_peers(bench: Bench, names: list[str], inputs: Path, command: str) -> list[Figure]:
    """`command` per item, drained by `jobkit run -p 2`, by GNU parallel -j2 with its joblog
    and by xargs -P2, on `names` (files in `inputs`, or with no inputs, message bodies)."""
    listed = bench.root / "items.txt"
    listed.write_text("".join(f"{name}\n" for name in names))
    no_input = command.find("{input}") < 0
    env = {**bench.env(inputs), "TASK_COMMAND": command, "NO_INPUT": str(no_input).lower()}
    _fresh_output(bench)
    bench.publish(names)
    runner = [JOBKIT, "run", "-p", "2", "--drain", "--log-file", str(bench.root / "log")]
    ours = len(names) / run_process(runner, env).seconds
    words = command.replace("{input}", "").split()
    joblog = bench.root / "joblog"
    joblog.unlink(missing_ok=True)
    parallel = ["parallel", "-j2", "--joblog", str(joblog), *words, "::::", str(listed)]
    rates = {"GNU parallel -j2 --joblog": len(names) / _seconds_in(parallel, inputs)}
    xargs = ["sh", "-c", f"xargs -P2 -n1 {' '.join(words)} < {listed}"]
    rates["xargs -P2 -n1"] = len(names) / _seconds_in(xargs, inputs)
    batch = f"{len(names):,} items, {command!r}, jobkit run -p 2 --drain"
    note = ", ".join(f"{peer} {rate:,.0f} items/s" for peer, rate in rates.items())
    return [
        Figure(batch, ours, rate, "items/s", True, f">= {limit}x {peer}",
               ours >= limit * rate, f"kit {ours:,.0f} items/s, {note}", peer=peer)
        for (peer, rate), limit in zip(rates.items(), (2.0, 0.5), strict=True)
    ]  # fmt: skip


def chatty(bench: Bench) -> Figure:
    """One item printing LINES lines: the kit's time beyond its fixed cost (the same item
    printing nothing), against the program's alone."""
    alone = seconds(lambda: subprocess.run(["seq", "1", str(LINES)], stdout=subprocess.DEVNULL))
    times = {}
    for command in ("true", f"seq 1 {LINES}"):
        bench.publish(["count"])
        env = {**bench.env(bench.root), "NO_INPUT": "true", "TASK_COMMAND": command}
        times[command] = run_process(python("-m", "jobkit_worker"), env).seconds
    beyond = times[f"seq 1 {LINES}"] - times["true"]
    return Figure(
        f"1 item printing {LINES:,} lines, beyond the item's fixed cost",
        beyond,
        alone,
        "s",
        False,
        "<= 2x alone",
        beyond <= 2 * alone,
        f"through the kit {times[f'seq 1 {LINES}']:.3f} s, an item printing nothing "
        f"{times['true']:.3f} s, alone {alone:.3f} s",
        peer="alone",
    )


def many_outputs(bench: Bench) -> Figure:
    """Seconds per output of one item writing OUTPUTS files (the worker's store phase) against
    a plain loop writing each through a temporary file, fsync, rename and directory fsync."""
    script = bench.root / "many.py"
    script.write_text(WRITE_MANY)
    _fresh_output(bench)
    bench.publish(["parts"])
    env = {**bench.env(bench.root), "NO_INPUT": "true"}
    env["TASK_COMMAND"] = f"{python()[0]} {script} {OUTPUTS} {{output_dir}}"
    outcome = subprocess.run(python("-m", "jobkit_worker"), env=env, capture_output=True)
    ours = json.loads(outcome.stdout.splitlines()[-1])["phases"]["store"] / OUTPUTS
    plain = _plain_loop(bench.root / "plain", PLAIN_OUTPUTS) / PLAIN_OUTPUTS
    return Figure(
        f"1 item writing {OUTPUTS:,} outputs, per output", ours, plain, "s", False,
        "<= 0.5x a plain loop", ours <= 0.5 * plain,
        f"the plain loop timed on {PLAIN_OUTPUTS:,} files", peer="plain loop",
    )  # fmt: skip


def big_output(bench: Bench) -> Figure:
    """A worker's peak resident memory after storing a BIG_BYTES output, against its size."""
    script = bench.root / "big.sh"
    script.write_text(BIG_THEN_PEAK)
    _fresh_output(bench)
    bench.publish(["big", "peak"])
    env = {**bench.env(bench.root), "NO_INPUT": "true"}
    env["TASK_COMMAND"] = f"sh {script} {{item}} {{output_dir}}"
    run_process(python("-m", "jobkit_worker", "--drain"), env)
    peak = int((bench.root / "out" / "peak.txt").read_text().split()[1]) * 1024
    _fresh_output(bench)
    return Figure(
        f"worker's peak memory storing a {BIG_BYTES / 1e9:g} GB output", peak / 1e6,
        BIG_BYTES / 1e6, "MB", False, "bounded (not the output's size)",
        peak < BIG_BYTES / 4, "resident set's high-water mark, imports included", peer="output",
    )  # fmt: skip


def _seconds_in(command: list[str], directory: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=directory, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def _plain_loop(directory: Path, count: int) -> float:
    directory.mkdir(exist_ok=True)
    started = time.perf_counter()
    for index in range(count):
        fd, temporary = tempfile.mkstemp(dir=directory)
        with os.fdopen(fd, "wb") as file:
            file.write(str(index).encode())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, directory / f"part{index:05d}.txt")
        folder = os.open(directory, os.O_RDONLY)
        os.fsync(folder)
        os.close(folder)
    return time.perf_counter() - started


def _fresh_output(bench: Bench) -> None:
    """An empty output directory: each batch its own outputs, records and owners."""
    subprocess.run(["rm", "-rf", str(bench.root / "out")], check=True)
    (bench.root / "out").mkdir()
