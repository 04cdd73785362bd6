"""What every benchmark needs: its own queue and directories, timed processes, medians."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pika

from jobkit_publisher.queue.publish import publish_items
from jobkit_worker.broker import dead_queue_name
from jobkit_worker.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Bench:
    """One benchmark run's broker queue and directories, all removed at the end."""

    settings: Settings
    root: Path

    def env(self, input_dir: Path) -> dict[str, str]:
        """The environment of a worker (ours or the seed's) reading from `input_dir`."""
        return {
            **os.environ,
            "BROKER_URL": self.settings.broker_url,
            "QUEUE": self.settings.queue,
            "INPUT_URL": str(input_dir),
            "OUTPUT_URL": str(self.root / "out"),
            "LOG_LEVEL": "WARNING",
        }

    def publish(self, names: Sequence[str]) -> None:
        """Put `names` on the bench queue, confirmed, marked to be done again: each round
        measures the work, not the shortcut for an item whose result is already stored."""
        publish_items(self.settings, list(names), redo=True)


@contextmanager
def bench_run() -> Iterator[Bench]:
    """A `bench-<uuid>` queue and a temporary directory, deleted afterwards."""
    broker_url = os.environ.get("BROKER_URL") or Settings().broker_url
    # A benchmark's queue holds nothing worth a wait for crash safety.
    settings = Settings(
        broker_url=broker_url, queue=f"bench-{uuid.uuid4().hex[:12]}", new_queue_wait_seconds=0
    )
    root = Path(tempfile.mkdtemp(prefix="jobkit-bench-"))
    (root / "out").mkdir()
    try:
        yield Bench(settings, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        channel = connection.channel()
        for queue in (settings.queue, dead_queue_name(settings.queue)):
            channel.queue_delete(queue)
        connection.close()


def median_seconds(work: Callable[[], object], rounds: int) -> float:
    """The median wall time of `work` over `rounds` runs."""
    return statistics.median(seconds(work) for _ in range(rounds))


def seconds(work: Callable[[], object]) -> float:
    """The wall time of one call of `work`."""
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


@dataclass(frozen=True)
class Run:
    """How a finished process went."""

    seconds: float  # wall time, start to exit
    cpu_seconds: float  # user + system


def run_process(args: Sequence[str], env: dict[str, str]) -> Run:
    """Run a process to its end; raises RuntimeError, with its stderr, if it fails."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(args), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors
        )
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            text = errors.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(args)} exited {process.returncode}: {text}")
    # Not ru_maxrss: it counts the bench's own memory, copied into the child before exec.
    return Run(elapsed, usage.ru_utime + usage.ru_stime)


def python(*args: str) -> list[str]:
    """A command line running this interpreter."""
    return [sys.executable, *args]
