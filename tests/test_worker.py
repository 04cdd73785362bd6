"""One worker process against a real RabbitMQ: one item, ack after store, the exit-code contract."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pika
import pytest
from conftest import dead_letter_reasons, last_outcome, settled_depths, worker
from login_dropper import DroppingProxy

from jobkit_publisher.data.samples import sample_csv
from jobkit_publisher.queue.publish import publish_items
from jobkit_worker.broker import DELIVERY_LIMIT, Session
from jobkit_worker.builtin.aggregate import aggregate_csv, aggregate_item
from jobkit_worker.consumer import take_one
from jobkit_worker.errors import ExitCode
from jobkit_worker.settings import Settings
from jobkit_worker.storage.base import open_store
from jobkit_worker.tasks.contract import Outputs

pytestmark = pytest.mark.rabbitmq


def _write_inputs(settings: Settings, rows: int = 3_000, count: int = 2) -> dict[str, bytes]:
    files = {f"temperature{i}.csv": sample_csv(rows, seed=0, index=i) for i in range(1, count + 1)}
    for name, data in files.items():
        open_store(settings.input_url, settings).write(name, data)
    return files


def test_a_worker_takes_exactly_one_item_stores_its_result_and_acks_it(
    env: dict[str, str], settings: Settings
) -> None:
    files = _write_inputs(settings)
    publish_items(settings, list(files))

    result = worker(env)

    assert result.returncode == 0, result.stderr
    outcome = last_outcome(result)
    assert outcome["outcome"] == "done"
    assert outcome["item"] == "temperature1.csv"
    written = Path(settings.output_url, "temperature1_aggregated.csv").read_bytes()
    assert written == aggregate_csv(files["temperature1.csv"])
    assert not Path(settings.output_url, "temperature2_aggregated.csv").exists()
    assert settled_depths(settings.broker_url, settings.queue, (1, 0)) == (1, 0)
    for phase in ("took temperature1.csv", "aggregated", "stored", "acked"):
        assert phase in result.stderr, result.stderr


def test_an_empty_queue_is_a_clean_exit_0(env: dict[str, str]) -> None:
    result = worker(env)
    assert result.returncode == 0, result.stderr
    assert last_outcome(result)["outcome"] == "empty"


def test_a_malformed_file_is_dead_lettered_with_its_reason(
    env: dict[str, str], settings: Settings
) -> None:
    bad = b"Datetime,Temperature\n2017-12-01 00:00:00,hot\n"
    open_store(settings.input_url, settings).write("bad.csv", bad)
    publish_items(settings, ["bad.csv"])

    result = worker(env)

    assert result.returncode == ExitCode.DEAD, result.stderr
    assert settled_depths(settings.broker_url, settings.queue, (0, 1)) == (0, 1)
    reasons = dead_letter_reasons(settings.broker_url, settings.queue)
    assert reasons == ["bad.csv: line 2: Temperature 'hot' is not a number."]


def test_a_missing_file_is_dead_lettered_naming_it(env: dict[str, str], settings: Settings) -> None:
    publish_items(settings, ["ghost.csv"])
    result = worker(env)
    assert result.returncode == ExitCode.DEAD, result.stderr
    (reason,) = dead_letter_reasons(settings.broker_url, settings.queue)
    assert reason.startswith("ghost.csv: no such file in")


def test_an_unstorable_result_goes_back_to_the_queue_until_the_delivery_limit(
    env: dict[str, str], settings: Settings
) -> None:
    _write_inputs(settings, count=1)
    publish_items(settings, ["temperature1.csv"])
    Path(settings.output_url, "temperature1_aggregated.csv").mkdir(parents=True)  # in the way

    codes = [worker(env).returncode for _ in range(DELIVERY_LIMIT + 1)]

    assert codes == [ExitCode.RETRY] * DELIVERY_LIMIT + [ExitCode.DEAD]
    assert settled_depths(settings.broker_url, settings.queue, (0, 1)) == (0, 1)
    (reason,) = dead_letter_reasons(settings.broker_url, settings.queue)
    assert reason.startswith(f"failed {DELIVERY_LIMIT + 1} times, last: temperature1_aggregated")
    assert "cannot write" in reason


def test_an_unreachable_broker_is_one_clear_line_and_exit_2(env: dict[str, str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = f"amqp://guest:s3cret@127.0.0.1:{port}/"
    result = worker({**env, "BROKER_URL": unreachable, "BROKER_RETRY_SECONDS": "0"})

    assert result.returncode == ExitCode.CONFIG
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert (
        f"Cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:{port}/ (connection refused)"
        in (lines[0])
    )
    assert "s3cret" not in result.stderr + result.stdout


def test_a_configuration_error_takes_no_message(env: dict[str, str], settings: Settings) -> None:
    publish_items(settings, ["temperature1.csv"])
    result = worker({**env, "INPUT_URL": "ftp://example/in"})
    assert result.returncode == ExitCode.CONFIG
    assert "INPUT_URL 'ftp://example/in' has an unsupported scheme" in result.stderr
    assert settled_depths(settings.broker_url, settings.queue, (1, 0)) == (1, 0)


def test_a_missing_input_directory_takes_no_message(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    publish_items(settings, ["temperature1.csv"])
    result = worker({**env, "INPUT_URL": str(tmp_path / "typo")})
    assert result.returncode == ExitCode.CONFIG
    assert f"{tmp_path / 'typo'} is not a directory" in result.stderr
    assert settled_depths(settings.broker_url, settings.queue, (1, 0)) == (1, 0)


def _unwritable_directory(tmp_path: Path) -> Path:
    """A directory this process cannot write in: root writes anywhere but in sysfs."""
    if os.geteuid() == 0:
        return Path("/sys/kernel")
    directory = tmp_path / "read-only"
    directory.mkdir(mode=0o555)
    return directory


def test_an_unwritable_output_directory_takes_no_message(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    publish_items(settings, ["temperature1.csv"])
    unwritable = _unwritable_directory(tmp_path)

    result = worker({**env, "OUTPUT_URL": str(unwritable)})

    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert f"Cannot write to {unwritable}" in result.stderr
    assert settled_depths(settings.broker_url, settings.queue, (1, 0)) == (1, 0)


def test_an_item_longer_than_the_heartbeat_timeout_is_acked_once(
    settings: Settings, broker_url: str
) -> None:
    short_heartbeat = Settings(
        broker_url=f"{broker_url}?heartbeat=1",
        queue=settings.queue,
        input_url=settings.input_url,
        output_url=settings.output_url,
    )
    _write_inputs(settings, count=1)
    publish_items(settings, ["temperature1.csv"])

    @contextlib.contextmanager
    def slow_task(name: str, data: bytes) -> Iterator[Outputs]:
        time.sleep(4)  # twice the broker's timeout for a 1 s heartbeat
        yield aggregate_item(name, data)

    outcome = take_one(
        short_heartbeat,
        slow_task,
        open_store(settings.input_url, settings),
        open_store(settings.output_url, settings),
    )

    assert outcome.code == ExitCode.DONE, outcome.reason
    assert Path(settings.output_url, "temperature1_aggregated.csv").exists()
    assert settled_depths(settings.broker_url, settings.queue, (0, 0)) == (0, 0)


@pytest.mark.slow
def test_a_worker_killed_mid_item_loses_nothing(env: dict[str, str], settings: Settings) -> None:
    files = _write_inputs(settings, rows=525_600, count=1)
    publish_items(settings, list(files))
    victim = subprocess.Popen(
        [sys.executable, "-m", "jobkit_worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert victim.stderr is not None
    for line in victim.stderr:
        if b"took temperature1.csv" in line:
            break
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    assert not Path(settings.output_url, "temperature1_aggregated.csv").exists()

    result = worker(env)

    assert result.returncode == 0, result.stderr
    outcome = last_outcome(result)
    assert (outcome["item"], outcome["delivery"]) == ("temperature1.csv", 2)
    written = Path(settings.output_url, "temperature1_aggregated.csv").read_bytes()
    assert written == aggregate_csv(files["temperature1.csv"])
    assert settled_depths(settings.broker_url, settings.queue, (0, 0)) == (0, 0)


def test_drain_takes_every_item_one_at_a_time_and_exits_0(
    env: dict[str, str], settings: Settings
) -> None:
    files = _write_inputs(settings, count=3)
    publish_items(settings, list(files))

    result = worker(env, "--drain")

    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["item"] for line in lines] == list(files)
    for name, data in files.items():
        stored = Path(settings.output_url, name.replace(".csv", "_aggregated.csv")).read_bytes()
        assert stored == aggregate_csv(data)
    assert settled_depths(settings.broker_url, settings.queue, (0, 0)) == (0, 0)


def test_drain_dead_letters_a_bad_item_finishes_the_others_and_exits_3(
    env: dict[str, str], settings: Settings
) -> None:
    files = _write_inputs(settings, count=2)
    publish_items(settings, ["temperature1.csv", "ghost.csv", "temperature2.csv"])

    result = worker(env, "--drain")

    assert result.returncode == ExitCode.DEAD, result.stderr
    outcomes = [json.loads(line)["outcome"] for line in result.stdout.splitlines()]
    assert outcomes == ["done", "dead", "done"]
    assert all(
        Path(settings.output_url, n.replace(".csv", "_aggregated.csv")).exists() for n in files
    )
    assert settled_depths(settings.broker_url, settings.queue, (0, 1)) == (0, 1)


def test_drain_on_an_empty_queue_is_a_clean_exit_0(env: dict[str, str]) -> None:
    result = worker(env, "--drain")
    assert result.returncode == 0, result.stderr
    assert last_outcome(result)["outcome"] == "empty"


def test_an_input_over_the_size_limit_is_dead_lettered_unread_with_its_size(
    env: dict[str, str], settings: Settings
) -> None:
    _write_inputs(settings, rows=1_000, count=1)
    size = Path(settings.input_url, "temperature1.csv").stat().st_size
    publish_items(settings, ["temperature1.csv"])

    result = worker({**env, "MAX_INPUT_BYTES": "1000"})

    assert result.returncode == ExitCode.DEAD, result.stderr
    (reason,) = dead_letter_reasons(settings.broker_url, settings.queue)
    assert reason.startswith(
        f"temperature1.csv: {size:,} bytes is more than MAX_INPUT_BYTES (1,000)"
    ), reason


def test_a_worker_doing_a_local_item_never_imports_pandas_typer_rich_or_azure(
    env: dict[str, str], settings: Settings
) -> None:
    _write_inputs(settings, count=1)
    publish_items(settings, ["temperature1.csv"])

    result = worker(env, python_options=("-X", "importtime"))

    assert last_outcome(result)["outcome"] == "done", result.stderr
    imported = {
        line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if "|" in line
    }
    assert "jobkit_worker.builtin.aggregate" in imported, "the task itself was imported"
    for package in ("pandas", "typer", "rich", "azure"):
        assert not any(name.split(".")[0] == package for name in imported), package


def _publish_again_and_abandon(settings: Settings, item: str) -> None:
    """Publish `item` and take it without an ack, so the broker redelivers it (attempt 2)."""
    publish_items(settings, [item])
    connection = pika.BlockingConnection(pika.URLParameters(settings.broker_url))
    assert connection.channel().basic_get(settings.queue, auto_ack=False)[0] is not None
    connection.close()


def test_a_success_record_is_stored_beside_the_output(
    env: dict[str, str], settings: Settings
) -> None:
    files = _write_inputs(settings, count=1)
    publish_items(settings, list(files))

    assert worker(env).returncode == 0

    record = json.loads(Path(settings.output_url, "temperature1.csv.done.json").read_text())
    assert record["item"] == "temperature1.csv"
    assert record["input_bytes"] == len(files["temperature1.csv"])
    assert record["input_sha256"] == hashlib.sha256(files["temperature1.csv"]).hexdigest()
    output = Path(settings.output_url, "temperature1_aggregated.csv").read_bytes()
    assert record["outputs"] == {"temperature1_aggregated.csv": hashlib.md5(output).hexdigest()}
    assert record["deliveries"] == 1


def test_a_redelivered_item_already_done_is_acked_without_redoing_it(
    env: dict[str, str], settings: Settings
) -> None:
    _write_inputs(settings, count=1)
    publish_items(settings, ["temperature1.csv"])
    assert worker(env).returncode == 0
    output = Path(settings.output_url, "temperature1_aggregated.csv")
    first = output.stat().st_mtime_ns
    _publish_again_and_abandon(settings, "temperature1.csv")  # as after a lost ack

    result = worker(env)

    assert result.returncode == 0, result.stderr
    assert "already done from this input" in result.stderr
    assert output.stat().st_mtime_ns == first
    assert settled_depths(settings.broker_url, settings.queue, (0, 0)) == (0, 0)


def test_a_redelivered_item_whose_input_changed_is_done_again(
    env: dict[str, str], settings: Settings
) -> None:
    _write_inputs(settings, count=1)
    publish_items(settings, ["temperature1.csv"])
    assert worker(env).returncode == 0
    changed = b"Datetime,Temperature\n2017-12-01 00:00:00,9.5\n"
    open_store(settings.input_url, settings).write("temperature1.csv", changed)
    _publish_again_and_abandon(settings, "temperature1.csv")

    assert worker(env).returncode == 0

    output = Path(settings.output_url, "temperature1_aggregated.csv").read_bytes()
    assert output == aggregate_csv(changed)


def test_a_message_body_ending_in_a_newline_names_the_item_without_it(
    env: dict[str, str], settings: Settings
) -> None:
    files = _write_inputs(settings, count=1)
    with Session(settings, "test") as session:
        session.declare(settings.queue)
        session.publish(settings.queue, b"temperature1.csv\n")  # as 'echo NAME | amqp-publish'

    result = worker(env)

    assert result.returncode == 0, result.stderr
    assert last_outcome(result)["item"] == "temperature1.csv"
    written = Path(settings.output_url, "temperature1_aggregated.csv").read_bytes()
    assert written == aggregate_csv(files["temperature1.csv"])


def test_a_worker_retries_a_broker_that_drops_it_while_it_logs_in(env: dict[str, str]) -> None:
    broker = urlsplit(env["BROKER_URL"])
    proxy = DroppingProxy((broker.hostname or "localhost", broker.port or 5672), drops=2)
    through = broker._replace(netloc=f"{broker.netloc.rsplit('@', 1)[0]}@127.0.0.1:{proxy.port}")
    dropped = {**env, "BROKER_URL": through.geturl(), "BROKER_RETRY_SECONDS": "30"}

    result = worker(dropped)

    assert result.returncode == ExitCode.DONE, result.stderr
    assert "closed the connection while logging in; retrying" in result.stderr, result.stderr
    assert last_outcome(result)["outcome"] == "empty"


def test_a_login_the_broker_refuses_is_one_line_at_once(env: dict[str, str]) -> None:
    broker = urlsplit(env["BROKER_URL"])
    wrong = broker._replace(netloc=f"{broker.username}:wrong@{broker.netloc.rsplit('@', 1)[1]}")

    result = worker({**env, "BROKER_URL": wrong.geturl(), "BROKER_RETRY_SECONDS": "30"})

    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert "refused the credentials" in result.stderr and "retrying" not in result.stderr
