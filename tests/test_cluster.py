"""A three-node RabbitMQ cluster of private nodes loses the node everyone uses: the runner, its
workers and the publisher go on through the others, and nothing is lost."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import jobkit
from private_broker import PrivateCluster

from jobkit_publisher.queue.published import read_published
from jobkit_publisher.run.record import load_run, run_record_name
from jobkit_worker.broker import Session
from jobkit_worker.errors import ConfigError
from jobkit_worker.settings import Settings
from jobkit_worker.storage.local import LocalStore

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

# Copies its input, slowly enough that the run is under way when a node goes.
SLOW_COPY = 'sleep 0.3; cp "$1" "$2/"\n'


# Items per run: a few dozen in `make test`, more in `make chaos`.
ITEMS = int(os.environ.get("CLUSTER_ITEMS", "30"))


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    started = PrivateCluster(3)
    try:
        started.start()
        yield started
    finally:
        started.remove()


def _ready(url: str, queue: str) -> int:
    """Messages ready in `queue`, asked of whichever node answers."""
    with Session(Settings(broker_url=url, broker_retry_seconds=30), "test") as session:
        return session.depth(queue)


def _queued(url: str, queue: str) -> int:
    """Messages ready in `queue`, 0 while it is not declared yet."""
    try:
        return _ready(url, queue)
    except ConfigError:
        return 0


def _unavailable(tmp_path: Path, queue: str, fault: float) -> tuple[float, int]:
    """From the run's record: seconds from the fault to the first message a worker took after
    it (how long the workers saw no queue), and the attempts it cost."""
    record = load_run(tmp_path / ".jobkit" / run_record_name(queue))
    assert record is not None
    taken = [attempt.took for attempt in record.attempts if attempt.took and attempt.took > fault]
    retries = sum(attempt.outcome == "retry" for attempt in record.attempts)
    return min(taken, default=math.inf) - fault, retries


@pytest.mark.parametrize("fault", ["kill", "stop"])
def test_a_run_goes_on_through_the_other_nodes_when_the_queue_leader_goes(
    cluster: PrivateCluster, env: dict[str, str], tmp_path: Path, fault: str
) -> None:
    job = {**env, "BROKER_URL": cluster.url, "BROKER_RETRY_SECONDS": "60"}
    program = tmp_path / "copy.sh"
    program.write_text(SLOW_COPY)
    job["TASK_COMMAND"] = shlex.join(["sh", str(program), "{input}", "{output_dir}"])
    names = [f"item{index:03d}.txt" for index in range(ITEMS)]
    for name in names:
        Path(job["INPUT_URL"], name).write_text(name)
    assert jobkit(job, "publish", *names).returncode == 0
    command = ["run", "--json", "--parallelism", "2", "--backoff-limit", "30"]
    run = subprocess.Popen(
        [str(Path(sys.executable).parent / "jobkit"), *command],
        env=job,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    outputs = Path(job["OUTPUT_URL"])
    deadline = time.monotonic() + 120
    while len(list(outputs.glob("item*.txt"))) < ITEMS // 6:
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.1)

    leader = cluster.leader(job["QUEUE"])
    done_before = len(list(outputs.glob("item*.txt")))
    fault_at = time.time()
    leader.kill() if fault == "kill" else leader.stop()
    _, stderr = run.communicate(timeout=300)

    assert run.returncode == 0, stderr[-3000:]
    assert sorted(path.read_text() for path in outputs.glob("item*.txt")) == names
    status = json.loads(jobkit(job, "status", "--json").stdout)
    assert status["reconciliation"]["adds_up"] is True, status
    assert status["reconciliation"]["done"] == len(names)
    assert status["dead_letters"] == []
    assert _ready(cluster.url, job["QUEUE"]) == 0
    unavailable, retries = _unavailable(tmp_path, job["QUEUE"], fault_at)
    print(
        f"\n{fault} of the queue's leader {leader.node} after {done_before} of {ITEMS} items: "
        f"{unavailable:.1f} s until a worker took the next item, {retries} items retried, lost 0"
    )


def test_the_publisher_publishes_again_through_another_node_what_the_lost_one_did_not_confirm(
    cluster: PrivateCluster, env: dict[str, str]
) -> None:
    job = {**env, "BROKER_URL": cluster.url, "BROKER_RETRY_SECONDS": "60", "NO_INPUT": "true"}
    names = [f"item{index:06d}" for index in range(150_000)]
    publish = subprocess.Popen(
        [str(Path(sys.executable).parent / "jobkit"), "publish", "--json", "--from", "-"],
        env=job,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert publish.stdin is not None
    publish.stdin.write("\n".join(names))
    publish.stdin.close()
    deadline = time.monotonic() + 120
    while _queued(cluster.url, job["QUEUE"]) < 10_000 and time.monotonic() < deadline:
        time.sleep(0.1)  # part-way through

    cluster.nodes[0].kill()
    publish.wait(timeout=300)

    assert publish.stdout is not None and publish.stderr is not None
    stderr = publish.stderr.read()
    assert publish.returncode == 0, stderr[-3000:]
    assert json.loads(publish.stdout.read())["confirmed"] == len(names)
    assert "trying the next node" in stderr, "the node was lost part-way"
    published = read_published(LocalStore(Path(job["OUTPUT_URL"])), job["QUEUE"])
    assert published is not None and sorted(published.confirmed) == names
    assert _ready(cluster.url, job["QUEUE"]) >= len(names), "some item was lost"
    again = re.findall(r"(\d+) items sent and not confirmed are sent again", stderr)
    said = [int(count) for count in again]
    assert said, stderr[-3000:]
    assert _ready(cluster.url, job["QUEUE"]) - len(names) <= sum(said), "copies were not said"
