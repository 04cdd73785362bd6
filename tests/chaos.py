"""A bounded, randomized fault session: workers SIGKILLed at random moments and broker restarts
while `jobkit run` works through a batch; then every item is checked.

Run it with `make chaos` (or `python tests/chaos.py --help`); a test runs a short session.
It talks only to a private RabbitMQ node on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from private_broker import PrivateBroker  # beside this file, on sys.path when run or tested

from jobkit_publisher.data.samples import sample_csv
from jobkit_worker.builtin.aggregate import aggregate_csv
from jobkit_worker.builtin.outputs import output_name
from jobkit_worker.storage.local import TEMPORARY_DIR


@dataclass
class ChaosResult:
    """What one session did and found; lost and corrupt must be 0."""

    items: int
    kills: int
    restarts: int
    done: int
    dead_lettered: int
    lost: int
    corrupt: int
    seconds: float

    def line(self) -> str:
        return ", ".join(f"{key} {value}" for key, value in asdict(self).items())


def run_chaos(items: int, kills: int, restarts: int, rows: int, seed: int) -> ChaosResult:
    """Publish `items` files, run the job, kill workers and restart the broker meanwhile."""
    rng = random.Random(seed)
    started = time.monotonic()
    broker = PrivateBroker()
    with tempfile.TemporaryDirectory(prefix="jobkit-chaos-") as directory:
        root = Path(directory)
        env = _job_env(root, broker.url)
        names = [f"item{i:04d}.csv" for i in range(items)]
        for index, name in enumerate(names):
            (root / "in" / name).write_bytes(sample_csv(rows, seed, index))
        try:
            broker.start()
            _jobkit(env, "publish", *names)
            runner = subprocess.Popen(
                [_bin("jobkit"), "run", "--json", "--parallelism", "3", "--backoff-limit", "10000"],
                env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            killed, restarted = _cause_faults(rng, runner, broker, kills, restarts)
            runner.communicate(timeout=600)
            listed = _jobkit(env, "dead", "list", "--json")
        finally:
            broker.remove()
        dead = {letter["item"] for letter in json.loads(listed)["dead_letters"]}
        done, corrupt = _check_outputs(root, names)
        lost = [name for name in names if name not in done and name not in dead]
    return ChaosResult(
        items, killed, restarted, len(done), len(dead), len(lost), corrupt,
        round(time.monotonic() - started, 1),
    )  # fmt: skip


def _cause_faults(
    rng: random.Random, runner: subprocess.Popen[str], broker: PrivateBroker, kills: int,
    restarts: int,
) -> tuple[int, int]:  # fmt: skip
    """Kill random workers and restart the broker at random moments while the runner runs."""
    killed = restarted = 0
    events = ["kill"] * kills + ["restart"] * restarts
    rng.shuffle(events)
    for event in events:
        time.sleep(rng.uniform(0.05, 0.6))
        if runner.poll() is not None:
            break
        if event == "restart":
            broker.stop()
            broker.start()
            restarted += 1
            continue
        workers = _workers(runner.pid)
        deadline = time.monotonic() + 5
        while not workers and runner.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # between two workers: wait for the next one
            workers = _workers(runner.pid)
        if workers:
            os.kill(rng.choice(workers), signal.SIGKILL)
            killed += 1
    return killed, restarted


def _check_outputs(root: Path, names: list[str]) -> tuple[set[str], int]:
    """(items whose output is there, outputs that are not their input's aggregation).

    A temporary file left behind counts as corrupt: something was half-written, and neither a
    later worker nor the runner's end removed it.
    """
    done, corrupt = set(), 0
    for name in names:
        output = root / "out" / output_name(name)
        if output.exists():
            done.add(name)
            corrupt += output.read_bytes() != aggregate_csv((root / "in" / name).read_bytes())
    out = root / "out"
    leftovers = [path for path in out.rglob(".*") if path.is_file()]
    leftovers += [path for path in (out / TEMPORARY_DIR).glob("*")]
    return done, corrupt + len(leftovers)


def _workers(runner: int) -> list[int]:
    """The runner's workers: the children of its fork server, which is one of its children."""
    return [worker for child in _children(runner) for worker in _children(child)]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _job_env(root: Path, broker_url: str) -> dict[str, str]:
    (root / "in").mkdir()
    (root / "out").mkdir()
    return {
        **os.environ,
        "BROKER_URL": broker_url,
        "BROKER_RETRY_SECONDS": "120",
        "QUEUE": f"chaos-{uuid.uuid4().hex[:8]}",
        "INPUT_URL": str(root / "in"),
        "OUTPUT_URL": str(root / "out"),
        "LOG_LEVEL": "WARNING",
        "NEW_QUEUE_WAIT_SECONDS": "0",  # its faults come later than a new queue's first seconds
    }


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _jobkit(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [_bin("jobkit"), *args], env=env, check=True, capture_output=True, text=True, timeout=120
    ).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--kills", type=int, default=15)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--rows", type=int, default=100_000, help="readings per file")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = run_chaos(args.items, args.kills, args.restarts, args.rows, args.seed)
    print(result.line())
    sys.exit(0 if result.lost == 0 and result.corrupt == 0 else 1)


if __name__ == "__main__":
    main()
