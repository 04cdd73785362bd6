"""The same batch again: what changed is done again, the unchanged is skipped, and nothing
stale or another queue's counts as done."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import jobkit, settled_depths, status_counts

from jobkit_worker.builtin.aggregate import aggregate_csv
from jobkit_worker.errors import ExitCode

pytestmark = pytest.mark.rabbitmq


def _csv(value: float) -> str:
    return f"Datetime,Temperature\n2017-12-01 00:00:00,{value}\n2017-12-01 00:01:00,{value}\n"


def _publish(env: dict[str, str], *args: str) -> dict[str, object]:
    result = jobkit(env, "publish", "--json", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout))


def _done_batch(env: dict[str, str], values: dict[str, float]) -> None:
    for name, value in values.items():
        Path(env["INPUT_URL"], name).write_text(_csv(value))
    _publish(env)
    run = jobkit(env, "run", "--parallelism", "2")
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_changed_input_is_stale_and_published_again_while_the_unchanged_are_skipped(
    env: dict[str, str],
) -> None:
    _done_batch(env, {"a.csv": 1.0, "b.csv": 2.0, "c.csv": 3.0})
    changed = Path(env["INPUT_URL"], "a.csv")
    changed.write_text(_csv(9.5))

    status = status_counts(env)
    assert (status["done"], status["stale"], status["adds_up"]) == (2, ["a.csv"], False), status
    text = jobkit(env, "status").stdout
    assert "a.csv" in text and "its input changed after it was done" in text, text

    published = _publish(env)
    assert published["confirmed"] == 1, published
    assert published["done"] == ["b.csv", "c.csv"], published
    assert list(published["redone"]) == ["a.csv"], published  # type: ignore[call-overload]
    run = jobkit(env, "run", "--parallelism", "1")
    assert run.returncode == 0, run.stdout + run.stderr
    result = Path(env["OUTPUT_URL"], "a_aggregated.csv").read_bytes()
    assert result == aggregate_csv(changed.read_bytes())
    status = status_counts(env)
    assert (status["done"], status["stale"], status["adds_up"]) == (3, [], True), status


def test_an_input_written_again_with_the_same_bytes_is_not_done_again(
    env: dict[str, str],
) -> None:
    _done_batch(env, {"a.csv": 1.0})
    path = Path(env["INPUT_URL"], "a.csv")
    path.write_text(_csv(1.0))  # a new time, the same content: its digest tells
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))

    published = _publish(env)

    assert (published["confirmed"], published["done"]) == (0, ["a.csv"]), published
    assert status_counts(env)["adds_up"] is True


def test_an_item_whose_output_was_deleted_is_published_again_without_force(
    env: dict[str, str],
) -> None:
    _done_batch(env, {"a.csv": 1.0, "b.csv": 2.0})
    Path(env["OUTPUT_URL"], "b_aggregated.csv").unlink()

    published = _publish(env)

    assert published["confirmed"] == 1 and list(published["redone"]) == ["b.csv"], published  # type: ignore[call-overload]


def test_a_second_queue_cannot_use_an_output_location_that_keeps_another_queues_records(
    env: dict[str, str], queue: str
) -> None:
    _done_batch(env, {"a.csv": 1.0})
    other = {**env, "QUEUE": f"{queue}-other"}

    publish = jobkit(other, "publish", "a.csv")
    run = jobkit(other, "run")

    for result in (publish, run):
        assert result.returncode == ExitCode.CONFIG, result.stdout + result.stderr
        assert f"keeps the success records of queue '{queue}'" in result.stderr, result.stderr
    assert status_counts(env)["adds_up"] is True


def test_status_verify_finds_an_output_edited_with_its_size_and_time_kept(
    env: dict[str, str],
) -> None:
    _done_batch(env, {"a.csv": 1.0})
    output = Path(env["OUTPUT_URL"], "a_aggregated.csv")
    before = output.stat()
    content = output.read_bytes()
    output.write_bytes(content.replace(b"1.0", b"7.0"))  # as 'cp -p' of another version
    os.utime(output, ns=(before.st_atime_ns, before.st_mtime_ns))

    plain = status_counts(env)
    verified = jobkit(env, "status", "--verify")

    assert plain["done"] == 1, plain  # size and time alone cannot tell
    assert "changed after it was stored" in verified.stdout, verified.stdout
    assert "--verify" in verified.stdout, verified.stdout
    assert status_counts(env, "--verify")["done"] == 0


def test_a_deleted_or_unreadable_success_record_is_named_as_such_not_called_lost(
    env: dict[str, str],
) -> None:
    _done_batch(env, {"a.csv": 1.0, "b.csv": 2.0, "c.csv": 3.0})
    Path(env["OUTPUT_URL"], "a.csv.done.json").unlink()
    Path(env["OUTPUT_URL"], "b.csv.done.json").write_text("{ not json")

    texts = [jobkit(env, "status").stdout for _ in range(2)]  # the second reads what the first kept

    for text in texts:
        assert "lost" not in text, text
        assert "a.csv: its success record a.csv.done.json is gone" in text, text
        assert "b.csv: its success record b.csv.done.json is unreadable" in text, text
    published = _publish(env)
    assert sorted(published["redone"]) == ["a.csv", "b.csv"], published  # type: ignore[call-overload]
    assert jobkit(env, "run").returncode == 0
    assert status_counts(env)["adds_up"] is True


def test_publishing_twice_after_an_input_changed_queues_it_once(env: dict[str, str]) -> None:
    _done_batch(env, {"a.csv": 1.0, "b.csv": 2.0})
    Path(env["INPUT_URL"], "a.csv").write_text(_csv(4.0))

    first, second = _publish(env), _publish(env)

    assert (first["confirmed"], second["confirmed"]) == (1, 0), (first, second)
    assert second["waiting"] == ["a.csv"], second
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (1, 0)) == (1, 0)
    assert jobkit(env, "run").returncode == 0
    assert _publish(env)["done"] == ["a.csv", "b.csv"]


def test_an_input_that_changes_again_after_its_redo_is_published_again(
    env: dict[str, str],
) -> None:
    _done_batch(env, {"a.csv": 1.0})
    changed = Path(env["INPUT_URL"], "a.csv")
    for value in (2.0, 3.0):
        changed.write_text(_csv(value))

        published = _publish(env)
        assert jobkit(env, "run").returncode == 0

        assert published["confirmed"] == 1, (value, published)
        result = Path(env["OUTPUT_URL"], "a_aggregated.csv").read_bytes()
        assert result == aggregate_csv(changed.read_bytes()), value
