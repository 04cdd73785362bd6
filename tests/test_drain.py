"""Drain mode's shape: the next item taken while one is done, items done acked in groups once
their results are in place. Nothing is acked before its outputs and success record are stored,
and a draining worker never holds more than one item it has not started."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, jobkit, read_depths, settled_depths

from jobkit_worker.builtin.aggregate import aggregate_csv
from jobkit_worker.names import owner_name

pytestmark = pytest.mark.rabbitmq


def _slow(env: dict[str, str], seconds: float) -> dict[str, str]:
    return {
        **env,
        "TASK": "slow_task:aggregate_slowly",
        "PYTHONPATH": str(ROOT / "tests"),
        "SLOW_SECONDS": str(seconds),
    }


def _publish_samples(env: dict[str, str], files: int, rows: int) -> None:
    assert jobkit(env, "data", "--files", str(files), "--rows", str(rows)).returncode == 0
    assert jobkit(env, "publish").returncode == 0


def _drain(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jobkit_worker", "--drain"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_a_draining_worker_holds_at_most_one_item_it_has_not_started(
    env: dict[str, str],
) -> None:
    _publish_samples(env, files=6, rows=100)
    worker = _drain(_slow(env, 1.5))
    try:
        lowest = 6
        deadline = time.monotonic() + 30
        while True:
            depth = read_depths(env["BROKER_URL"], env["QUEUE"])[0]
            # Read before looking: once the first item is stored, the second is in hand.
            if Path(env["OUTPUT_URL"], "temperature1_aggregated.csv").exists():
                break
            lowest = min(lowest, depth)
            assert time.monotonic() < deadline, "the first item was never stored"
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)

    # One item in hand and one taken ahead: four left in the queue, never fewer.
    assert lowest == 4
    assert (
        sum(read_depths(env["BROKER_URL"], env["QUEUE"]))
        + len(list(Path(env["OUTPUT_URL"]).glob("*_aggregated.csv")))
        == 6
    ), "an item was lost when the worker stopped"


def test_what_a_killed_draining_worker_reported_done_is_stored_and_nothing_is_lost(
    env: dict[str, str],
) -> None:
    _publish_samples(env, files=40, rows=1440)
    worker = _drain(_slow(env, 0.02))
    assert worker.stdout is not None
    lines = []
    for line in worker.stdout:
        lines.append(line)
        if len(lines) == 10:
            worker.kill()  # in the middle of a group: some done, not yet acked
            break
    lines += worker.stdout.readlines()  # what it had printed by then
    worker.wait(timeout=30)
    reported = [json.loads(line)["item"] for line in lines]

    for item in reported:  # reported means acked: its result and record are in place
        source = Path(env["INPUT_URL"], item).read_bytes()
        result = Path(env["OUTPUT_URL"], item.replace(".csv", "_aggregated.csv"))
        assert result.read_bytes() == aggregate_csv(source), item
        assert Path(env["OUTPUT_URL"], f"{item}.done.json").exists(), item
    again = jobkit(env, "run", "--json", "--drain")

    assert again.returncode == 0, again.stdout
    assert json.loads(again.stdout)["reconciliation"]["adds_up"], again.stdout
    for number in range(1, 41):
        source = Path(env["INPUT_URL"], f"temperature{number}.csv").read_bytes()
        result = Path(env["OUTPUT_URL"], f"temperature{number}_aggregated.csv")
        assert result.read_bytes() == aggregate_csv(source), number
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (0, 0)) == (0, 0)


def test_an_owner_left_empty_by_a_crash_does_not_refuse_its_item(env: dict[str, str]) -> None:
    assert jobkit(env, "data", "--files", "1", "--rows", "100").returncode == 0
    owner = Path(env["OUTPUT_URL"], owner_name("temperature1_aggregated.csv"))
    owner.parent.mkdir(parents=True)
    owner.write_bytes(b"")  # claimed in a group that a crash cut short: its content lost
    assert jobkit(env, "publish").returncode == 0

    run = jobkit(env, "run", "--json", "--drain")

    assert run.returncode == 0, run.stdout
    assert json.loads(run.stdout)["done"] == ["temperature1.csv"]
    assert owner.read_text() == "temperature1.csv"
