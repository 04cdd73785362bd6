"""Each figure of `make bench`, ours and the seed's measured side by side, interleaved."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pika
import pyarrow.csv as pacsv

from bench.harness import Bench, python, run_process, seconds
from bench.seed import seed_aggregate
from jobkit_publisher.queue.publish import publish_items
from jobkit_worker.broker import Session
from jobkit_worker.builtin.aggregate import aggregate_csv
from jobkit_worker.storage.local import LocalStore

JOBKIT = str(Path(sys.executable).parent / "jobkit")


@dataclass(frozen=True)
class Figure:
    """One row of the table: ours, the peer's (the seed's unless named), what the target asks."""

    name: str
    ours: float
    seed: float  # the peer's figure
    unit: str
    higher_is_better: bool
    target: str
    met: bool
    note: str = ""
    peer: str = "seed"

    @property
    def ratio(self) -> float:
        """How many times better ours is than the peer's."""
        return self.ours / self.seed if self.higher_is_better else self.seed / self.ours

    @property
    def ratio_text(self) -> str:
        """The ratio as the table shows it: against the seed, times better; against another
        peer, ours as a multiple of its time (its targets are written that way)."""
        if self.peer == "seed":
            return f"{self.ratio:.1f}x"
        return f"{self.ours / self.seed:.2f}x {self.peer}"


def aggregation(year: Path, out: Path, rounds: int) -> tuple[Figure, dict[str, float]]:
    """Read, aggregate and write one year's file, in this process (imports already done)."""
    times: dict[str, list[float]] = {"seed": [], "ours": [], "parse": [], "read": [], "write": []}
    ours_out, seed_out = out / "ours_aggregated.csv", out / "seed_aggregated.csv"
    for _ in range(rounds):
        times["seed"].append(seconds(lambda: seed_aggregate(year, seed_out)))
        started = time.perf_counter()
        data = year.read_bytes()
        read = time.perf_counter()
        result = aggregate_csv(data)
        ours_out.write_bytes(result)
        times["ours"].append(time.perf_counter() - started)
        times["read"].append(read - started)
        times["parse"].append(seconds(lambda: pacsv.read_csv(year)))
        started = time.perf_counter()
        LocalStore(out).write("fsynced.csv", result)
        times["write"].append(time.perf_counter() - started)
    median = {key: statistics.median(values) for key, values in times.items()}
    identical = ours_out.read_bytes() == seed_out.read_bytes()
    figure = Figure(
        "aggregate one year (read, aggregate, write)",
        median["ours"],
        median["seed"],
        "s",
        False,
        ">= 8x; <= 2x a bare parse",
        median["seed"] / median["ours"] >= 8,
        f"{median['ours'] / median['parse']:.2f}x a bare pyarrow parse "
        f"({median['parse'] * 1000:.0f} ms); output byte-identical to the seed's: {identical}",
    )
    costs = {
        "parse_aggregate_write_year_s": median["ours"],
        "bare_parse_year_s": median["parse"],
        "read_year_s": median["read"],
        "write_result_fsync_s": median["write"],
    }
    return figure, costs


def per_item(bench: Bench, inputs: Path, name: str, rounds: int) -> tuple[Figure, dict[str, float]]:
    """A fresh process per item, from start to ack: `jobkit-worker` against the seed's."""
    env = bench.env(inputs)
    ours, seed, runs = [], [], []
    for _ in range(rounds):
        bench.publish([name])
        runs.append(run_process(python("-m", "jobkit_worker"), env))
        ours.append(runs[-1].seconds)
        bench.publish([name])
        seed.append(run_process(python("-m", "bench.seed"), env).seconds)
    figure = Figure(
        "one item per process, start to ack (year file)",
        statistics.median(ours),
        statistics.median(seed),
        "s",
        False,
        "<= 0.40 s",
        statistics.median(ours) <= 0.40,
        f"median of {rounds}, fresh processes",
    )
    return figure, {
        "worker_year_item_s": statistics.median(ours),
        "worker_year_item_cpu_s": statistics.median(run.cpu_seconds for run in runs),
    }


def drain(bench: Bench, inputs: Path, names: list[str], sample: int, rounds: int) -> Figure:
    """All small items in one draining process, against a process per item (timed on a sample)."""
    env = bench.env(inputs)
    runs = []
    for _ in range(rounds):
        bench.publish(names)
        runs.append(run_process(python("-m", "jobkit_worker", "--drain"), env).seconds)
    drained = statistics.median(runs)
    bench.publish(names[:sample])
    started = time.perf_counter()
    for _ in range(sample):
        run_process(python("-m", "jobkit_worker"), env)
    per_process = (time.perf_counter() - started) * len(names) / sample
    return Figure(
        f"{len(names):,} small files, drain vs a process each",
        drained,
        per_process,
        "s",
        False,
        ">= 10x",
        per_process / drained >= 10,
        f"drain: median of {rounds}; a process per item timed on {sample} items, scaled",
    )


def publishing(bench: Bench, count: int, seed_count: int) -> Figure:
    """Confirmed persistent messages per second: batched confirms vs one confirm at a time."""
    names = [f"item{index:06d}.csv" for index in range(count)]
    ours = count / seconds(lambda: publish_items(bench.settings, names))
    _purge(bench)
    session = Session(bench.settings, "bench-seed-publisher")
    session.declare(bench.settings.queue)

    def one_by_one() -> None:
        for name in names[:seed_count]:
            session.publish(bench.settings.queue, name.encode())

    seed = seed_count / seconds(one_by_one)
    session.close()
    _purge(bench)
    return Figure(
        f"publish {count:,} confirmed persistent messages",
        ours,
        seed,
        "msg/s",
        True,
        ">= 10,000 msg/s",
        ours >= 10_000,
        f"seed: a confirm per message, timed on {seed_count:,}",
    )


def memory(year: Path, out: Path, rounds: int) -> tuple[Figure, dict[str, float]]:
    """Peak memory of one year's item above a worker's memory after its imports, x file size."""
    size = year.stat().st_size
    figures: dict[str, list[dict[str, int]]] = {"ours": [], "seed": []}
    for _ in range(rounds):
        for engine in ("ours", "seed"):
            output = subprocess.run(
                python("-m", "bench.memory", engine, str(year), str(out)),
                capture_output=True,
                check=True,
                text=True,
            ).stdout
            figures[engine].append(json.loads(output))
    growth = {
        engine: statistics.median((run["peak"] - run["after_imports"]) / size for run in runs)
        for engine, runs in figures.items()
    }
    after_imports = statistics.median(run["after_imports"] for run in figures["ours"])
    figure = Figure(
        "peak memory above imports, x file size",
        growth["ours"],
        growth["seed"],
        "x",
        False,
        "<= 4x",
        growth["ours"] <= 4,
        f"{size / 1e6:.1f} MB file; worker after imports {after_imports / 1e6:.0f} MB",
    )
    return figure, {"after_imports_bytes": after_imports, "peak_per_input_byte": growth["ours"]}


def end_to_end(
    bench: Bench, inputs: Path, names: list[str], rounds: int, drain: bool = False
) -> Figure:
    """`jobkit run --parallelism 2` on the year files against the seed's command, one by one."""
    env = bench.env(inputs)
    # As `make demo` runs it: progress bar and report included.
    command = [JOBKIT, "run", "--parallelism", "2", "--log-file", str(bench.root / "log")]
    command += ["--drain"] if drain else []
    ours, seed = [], []
    for _ in range(rounds):
        bench.publish(names)
        ours.append(run_process(command, env).seconds)
        bench.publish(names)
        started = time.perf_counter()
        for _ in names:
            run_process(python("-m", "bench.seed"), env)
        seed.append(time.perf_counter() - started)
    return Figure(
        f"{len(names)} year files: jobkit run -p 2{' --drain' if drain else ''} vs the seed's, "
        "one after another",
        statistics.median(ours),
        statistics.median(seed),
        "s",
        False,
        ">= 4x",
        statistics.median(seed) / statistics.median(ours) >= 4,
        f"median of {rounds}, whole commands",
    )


def _purge(bench: Bench) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(bench.settings.broker_url))
    connection.channel().queue_purge(bench.settings.queue)
    connection.close()
