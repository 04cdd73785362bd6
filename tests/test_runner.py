"""`jobkit run`: the local runner behaves like a Kubernetes Job and stops only when all is done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import jobkit, settled_depths

from jobkit_publisher.run.outcome import JobReport
from jobkit_worker.builtin.aggregate import aggregate_csv
from jobkit_worker.errors import ExitCode

pytestmark = pytest.mark.rabbitmq


def _publish_samples(env: dict[str, str], files: int = 6) -> None:
    made = jobkit(env, "data", "--files", str(files), "--rows", "3000")
    assert made.returncode == 0, made.stderr
    published = jobkit(env, "publish")
    assert published.returncode == 0, published.stderr
    assert f"Published {files} items" in published.stdout


def _run_json(env: dict[str, str], *args: str) -> tuple[int, dict[str, object]]:
    result = jobkit(env, "run", "--json", *args)
    return result.returncode, json.loads(result.stdout)


def test_six_items_with_parallelism_3_give_six_correct_outputs(env: dict[str, str]) -> None:
    _publish_samples(env)

    code, report = _run_json(env, "--parallelism", "3")

    assert code == 0, report
    assert sorted(report["done"]) == [f"temperature{i}.csv" for i in range(1, 7)]  # type: ignore[arg-type]
    assert report["dead"] == [] and report["failures"] == []
    for i in range(1, 7):
        source = Path(env["INPUT_URL"], f"temperature{i}.csv").read_bytes()
        result = Path(env["OUTPUT_URL"], f"temperature{i}_aggregated.csv").read_bytes()
        assert result == aggregate_csv(source)
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (0, 0)) == (0, 0)


def test_each_item_is_done_in_a_process_of_its_own(env: dict[str, str]) -> None:
    _publish_samples(env, files=3)

    code, report = _run_json(env, "--parallelism", "1")

    assert code == 0, report
    workers = {
        json.loads(Path(env["OUTPUT_URL"], f"temperature{i}.csv.done.json").read_text())["worker"]
        for i in range(1, 4)
    }
    assert len(workers) == 3, f"one process did several items: {workers}"


def test_the_report_says_what_was_done(env: dict[str, str]) -> None:
    _publish_samples(env, files=2)
    result = jobkit(env, "run", "--parallelism", "2")
    assert result.returncode == 0, result.stderr
    assert "2 done, 0 dead-lettered, 0 failed attempts retried, 0 still queued" in result.stdout


def test_completions_beyond_the_items_still_complete(env: dict[str, str]) -> None:
    _publish_samples(env, files=3)

    code, report = _run_json(env, "--parallelism", "3", "--completions", "8")

    assert code == 0, report
    assert len(report["done"]) == 3  # type: ignore[arg-type]
    assert report["empty"] == 5, "the other workers found the queue empty and exited 0"


def test_a_malformed_file_among_good_ones_is_dead_lettered_and_named(env: dict[str, str]) -> None:
    _publish_samples(env, files=3)
    Path(env["INPUT_URL"], "broken.csv").write_text("Datetime,Temperature\n2017-12-01,1\n")
    assert jobkit(env, "publish", "broken.csv").returncode == 0

    result = jobkit(env, "run", "--parallelism", "3")

    assert result.returncode == ExitCode.DEAD, result.stdout
    assert "3 done, 1 dead-lettered" in result.stdout
    assert (
        "broken.csv: line 2: Datetime '2017-12-01' is not in the form %Y-%m-%d %H:%M:%S"
        in result.stdout
    )
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (0, 1)) == (0, 1)
    status = json.loads(jobkit(env, "status", "--json").stdout)
    assert [letter["item"] for letter in status["dead_letters"]] == ["broken.csv"]
    assert "is not in the form" in status["dead_letters"][0]["reason"]
    assert len(status["outputs"]) == 3


def test_the_backoff_limit_stops_the_job_with_exit_1(env: dict[str, str]) -> None:
    _publish_samples(env, files=2)
    for i in (1, 2):  # a directory where each result should go: every store fails
        Path(env["OUTPUT_URL"], f"temperature{i}_aggregated.csv").mkdir(parents=True)

    code, report = _run_json(env, "--parallelism", "1", "--backoff-limit", "1")

    assert code == ExitCode.RETRY, report
    assert "backoff limit reached" in str(report["stopped"])
    assert len(report["failures"]) == 2  # type: ignore[arg-type]
    ready, dead = settled_depths(env["BROKER_URL"], env["QUEUE"], lambda depths: sum(depths) == 2)
    assert ready + dead == 2, "nothing is lost: the items are still queued"


def test_an_empty_queue_runs_nothing_and_succeeds(env: dict[str, str]) -> None:
    code, report = _run_json(env)
    assert code == 0, report
    assert report["done"] == [] and report["completions"] == 0


def test_publish_to_an_unreachable_broker_exits_2_with_one_line(env: dict[str, str]) -> None:
    unreachable = {**env, "BROKER_URL": "amqp://guest:pw@127.0.0.1:1/", "BROKER_RETRY_SECONDS": "0"}
    _publish = jobkit(unreachable, "publish", "a.csv")
    assert _publish.returncode == ExitCode.CONFIG
    assert _publish.stderr.strip().splitlines() == [
        "error: Cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/ (connection refused). "
        "Start it with 'make broker' or set BROKER_URL."
    ]


def test_drain_mode_does_every_item_and_reports_each_one(env: dict[str, str]) -> None:
    _publish_samples(env, files=6)

    code, report = _run_json(env, "--parallelism", "2", "--drain")

    assert code == 0, report
    assert sorted(report["done"]) == [f"temperature{i}.csv" for i in range(1, 7)]  # type: ignore[arg-type]
    # A worker that starts once the other has taken the last items (one in hand, one ahead)
    # finds the queue empty: a success without an item.
    assert report["failures"] == [] and report["empty"] <= 1
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (0, 0)) == (0, 0)


def test_remaining_items_count_each_item_once_while_workers_start() -> None:
    # 48 items: 40 done, 7 queued, and two workers running, one of them just started and not
    # yet holding its item, which is still among the queued.
    report = JobReport(completions=48, parallelism=2, backoff_limit=6, queued=7, running=2)
    report.done = [f"item{number}" for number in range(40)]

    assert report.remaining == 8


def test_an_item_whose_copy_was_acked_as_already_done_counts_once() -> None:
    # A broker restart lost the ack of item1: its copy came back and was acked, not redone.
    report = JobReport(completions=3, parallelism=2, backoff_limit=6, queued=1, running=1)
    report.done = ["item0", "item1"]
    report.already_done = ["item1"]

    assert (report.items_done, report.finished, report.remaining) == (2, 2, 1)


@pytest.mark.parametrize("mode", [(), ("--drain",)], ids=["a worker per item", "drain"])
def test_a_batch_of_poison_items_ends_once_the_queue_is_empty(
    env: dict[str, str], mode: tuple[str, ...]
) -> None:
    names = "\n".join(f"missing-{n:02}.csv" for n in range(30))
    published = jobkit({**env, "NO_INPUT": "true"}, "publish", "--from", "-", stdin=names)
    assert published.returncode == 0, published.stderr

    code, report = _run_json(env, "--parallelism", "2", *mode)

    assert code == ExitCode.DEAD, report
    assert len(report["dead"]) == 30, report  # type: ignore[arg-type]
    assert report["empty"] <= 2, "no worker is started for an item already dead-lettered"  # type: ignore[operator]
