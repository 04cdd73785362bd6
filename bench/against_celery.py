"""The kit against Celery on the same batch, and both against the no-queue floor.

Celery's workers are started once and stay warm between batches, as Celery runs in
production; every `jobkit run` starts its runner and its workers afresh, start-up included.
Every side does the same work per item (bench.floor.aggregate_file); the kit also writes a
success record and digests per item.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.figures import JOBKIT, Figure
from bench.harness import Bench, python, run_process

CELERY = str(Path(sys.executable).parent / "celery")
_RESULT_SECONDS = 120


@dataclass(frozen=True)
class Batch:
    """Times of one batch, each the median of the rounds, in seconds."""

    files: int
    celery: float
    drain: float
    per_item: float
    floor: float


class CeleryPeer:
    """A warm Celery worker's queue, and the task it runs."""

    def __init__(self, queue: str) -> None:
        from bench.celery_peer import aggregate

        self.queue = queue
        self._task = aggregate

    def batch(self, inputs: Path, output: Path, names: Sequence[str]) -> float:
        """Send the batch and wait for every result: seconds from the first send to the last."""
        started = time.perf_counter()
        results = [
            self._task.apply_async((str(inputs), str(output), name), queue=self.queue)
            for name in names
        ]
        for result in results:
            result.get(timeout=_RESULT_SECONDS)
        return time.perf_counter() - started


@contextmanager
def celery_worker(bench: Bench) -> Iterator[CeleryPeer]:
    """A Celery worker (-c 2) on a queue of its own, for the whole bench; stopped at the end."""
    os.environ["BROKER_URL"] = bench.settings.broker_url  # bench.celery_peer's broker
    peer = CeleryPeer(f"{bench.settings.queue}-celery")
    command = [CELERY, "-A", "bench.celery_peer", "worker", "-c", "2", "-Q", peer.queue]
    command += ["--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
    worker = subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.DEVNULL)
    try:
        yield peer
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        from bench.celery_peer import app

        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(peer.queue)


def measure(
    bench: Bench,
    celery: CeleryPeer,
    inputs: Path,
    names: list[str],
    rounds: int,
    per_item: bool = True,
) -> Batch:
    """Each side on `names`, interleaved round by round; a process per item only if
    `per_item` (0 s otherwise)."""
    # Each side its own outputs: the kit refuses to replace a result it did not write.
    output = bench.root / "out-peers"
    output.mkdir(exist_ok=True)
    env = bench.env(inputs)
    runner = [JOBKIT, "run", "--parallelism", "2", "--log-file", str(bench.root / "log")]
    half = len(names) // 2
    floors = [
        python("-m", "bench.floor", str(inputs), str(output), *part)
        for part in (names[:half], names[half:])
    ]
    times: dict[str, list[float]] = {"celery": [], "drain": [], "per_item": [], "floor": []}
    celery.batch(inputs, output, names)  # warm: its imports done, its connections open
    for _ in range(rounds):
        times["celery"].append(celery.batch(inputs, output, names))
        bench.publish(names)
        times["drain"].append(run_process([*runner, "--drain"], env).seconds)
        if per_item:
            bench.publish(names)
            times["per_item"].append(run_process(runner, env).seconds)
        else:
            times["per_item"].append(0.0)
        started = time.perf_counter()
        processes = [subprocess.Popen(floor, env=env) for floor in floors]
        if any(process.wait() for process in processes):
            raise RuntimeError("the no-queue floor failed")
        times["floor"].append(time.perf_counter() - started)
    return Batch(len(names), **{side: statistics.median(t) for side, t in times.items()})


def figures(days: Batch, quarters: Batch, years: Batch) -> list[Figure]:
    """The rows of the table: each of the kit's modes against Celery, and a process per item
    against no queue at all."""
    rows = [
        ("drain", days.drain, days.celery, "Celery", 1.0),
        ("drain", quarters.drain, quarters.celery, "Celery", 1.25),
        ("a process per item", quarters.per_item, quarters.celery, "Celery", 2.5),
        ("a process per item", years.per_item, years.floor, "no queue", 1.5),
    ]
    batches = [days, quarters, quarters, years]
    return [
        Figure(
            f"{batch.files} files, jobkit run -p 2, {mode}",
            ours,
            peer,
            "s",
            False,
            f"<= {limit}x {name}",
            ours <= limit * peer,
            f"Celery (warm) {batch.celery:.3f} s, --drain {batch.drain:.3f} s, "
            + (f"a process per item {batch.per_item:.3f} s, " if batch.per_item else "")
            + f"no queue (two processes) {batch.floor:.3f} s",
            peer=name,
        )
        for (mode, ours, peer, name, limit), batch in zip(rows, batches, strict=True)
    ]
