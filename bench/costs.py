"""The costs one item is made of, and the wall-time model built from them (docs/scale.md)."""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

from bench.figures import JOBKIT
from bench.harness import Bench, median_seconds, python, run_process
from jobkit_publisher.run.spawn import WorkerSpawner
from jobkit_worker.broker import Session
from jobkit_worker.builtin.aggregate import aggregate_item
from jobkit_worker.done_records import make_record
from jobkit_worker.names import record_name
from jobkit_worker.storage.local import LocalStore


def start_up(bench: Bench, rounds: int) -> dict[str, float]:
    """A bare interpreter, and one that imports everything a worker imports for an item."""
    env = bench.env(bench.root)
    bare = statistics.median(run_process(python("-c", "pass"), env).seconds for _ in range(rounds))
    imports = python("-c", "import jobkit_worker.__main__, jobkit_worker.builtin.aggregate")
    loaded = statistics.median(run_process(imports, env).seconds for _ in range(rounds))
    # On an empty queue: start, look, report, exit.
    runner = [JOBKIT, "run", "--json", "--log-file", str(bench.root / "log")]
    jobkit = statistics.median(run_process(runner, env).seconds for _ in range(rounds))
    return {
        "interpreter_s": bare,
        "worker_imports_s": loaded - bare,
        "forked_start_s": _forked_start(env, bench.root / "log", rounds),
        "jobkit_run_empty_s": jobkit,
    }


def _forked_start(env: dict[str, str], log: Path, rounds: int) -> float:
    """A worker forked from the local runner's template process, on an empty queue: start,
    connect, look, exit. The template's own start (its imports, once per run) is left out."""
    spawner = WorkerSpawner(parallelism=1)
    spawner.start(env, [], log).stop(grace_seconds=60)  # starts the template process

    def once() -> None:
        spawner.start(env, [], log).stop(grace_seconds=60)

    return median_seconds(once, rounds)


def broker_round_trips(bench: Bench, items: int) -> dict[str, float]:
    """Connect and declare once, then basic.get + ack per item, over one connection."""
    started = time.perf_counter()
    session = Session(bench.settings, "bench-costs")
    session.declare(bench.settings.queue)
    connected = time.perf_counter() - started
    bench.publish([f"item{index}.csv" for index in range(items)])
    started = time.perf_counter()
    for _ in range(items):
        delivery = session.get(bench.settings.queue)
        assert delivery is not None
        session.ack(delivery)
    per_item = (time.perf_counter() - started) / items
    session.close()
    return {"connect_declare_s": connected, "get_ack_s": per_item}


def small_item(small: Path, out: Path, rounds: int) -> dict[str, float]:
    """Read, aggregate and store (fsync) one small file and its success record, in process."""
    inputs, outputs = LocalStore(small.parent), LocalStore(out)

    def work() -> None:
        data, source = inputs.read_listed(small.name)
        results = aggregate_item(small.name, data)
        versions = {name: outputs.write(name, content) for name, content in results.items()}
        record = make_record(
            small.name, "bench", "aggregate", data, source, results, versions, 1, 0.0
        )
        outputs.write(record_name(small.name), record.to_bytes())

    return {"small_item_work_s": median_seconds(work, rounds)}


def predictions(costs: dict[str, float], sizes: dict[str, int], cores: int) -> dict[str, float]:
    """What the model of docs/scale.md says the measured runs take.

    A process per item: start-up s plus the work, each. `jobkit run` forks its workers from a
    template process that imports once (I), so each starts in f: T = R + I + max(ceil(N / P)
    * (f + w), N * c / cores), unless the cores run out first (c: CPU seconds of one item's
    work); R: the runner's own start and end.
    """
    imports = costs["interpreter_s"] + costs["worker_imports_s"]
    start = imports + costs["connect_declare_s"]
    small = costs["small_item_work_s"] + costs["get_ack_s"]
    year_work = costs["worker_year_item_s"] - imports
    waves = math.ceil(sizes["year"] / 2) * (costs["forked_start_s"] + year_work)
    cpu_bound = sizes["year"] * (costs["worker_year_item_cpu_s"] - imports) / cores
    return {
        "process_per_small_item_s": sizes["sample"] * (start + small),
        "drain_small_items_s": start + sizes["small"] * small,
        "run_p2_year_files_s": costs["jobkit_run_empty_s"] + imports + max(waves, cpu_bound),
    }
