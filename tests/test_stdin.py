"""`jobkit-worker --stdin`: the item named on standard input, done without taking a message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import settled_depths

from jobkit_publisher.data.samples import sample_csv
from jobkit_publisher.queue.publish import publish_items
from jobkit_worker.builtin.aggregate import aggregate_csv
from jobkit_worker.errors import ExitCode
from jobkit_worker.settings import Settings


def _stdin_worker(env: dict[str, str], item: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "jobkit_worker", "--stdin"],
        env=env,
        input=item,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.rabbitmq
def test_the_named_item_is_done_and_the_queue_is_left_alone(
    env: dict[str, str], settings: Settings
) -> None:
    data = sample_csv(2_000, seed=0, index=1)
    Path(settings.input_url, "temperature1.csv").write_bytes(data)
    publish_items(settings, ["temperature1.csv"])

    result = _stdin_worker(env, b"temperature1.csv\n")

    assert result.returncode == 0, result.stderr.decode()
    assert Path(settings.output_url, "temperature1_aggregated.csv").read_bytes() == aggregate_csv(
        data
    )
    assert settled_depths(settings.broker_url, settings.queue, (1, 0)) == (1, 0)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (b"ghost.csv", "ghost.csv: no such file in"),
        (b"", "Item name '' is empty"),
        (b"../etc/passwd", "must be a relative path of file names, without '..'"),
    ],
)
def test_an_item_that_can_never_succeed_exits_3_with_its_reason(
    tmp_path: Path, item: bytes, reason: str
) -> None:
    env = {"INPUT_URL": str(tmp_path), "OUTPUT_URL": str(tmp_path), "PATH": "/usr/bin"}
    result = _stdin_worker(env, item)
    assert result.returncode == ExitCode.DEAD, result.stderr.decode()
    outcome = json.loads(result.stdout.decode().splitlines()[-1])
    assert reason in outcome["reason"]
