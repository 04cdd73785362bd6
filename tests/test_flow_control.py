"""A broker that blocks publishers (a memory or disk alarm): every side says so, waits a bounded
time, then gives up losing nothing. A private node, whose alarms are raised by lowering its
limits; bounded in time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import declare, jobkit, read_depths, settled_depths, worker
from private_broker import PrivateBroker

from jobkit_worker.errors import ExitCode

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.rabbitmq4]

# (rabbitmqctl command raising the alarm, the same lifting it, what the kit names it)
ALARMS = {
    "memory": (
        ("set_vm_memory_high_watermark", "0.000001"),
        ("set_vm_memory_high_watermark", "0.4"),
        "memory",
    ),
    "disk": (("set_disk_free_limit", "100000GB"), ("set_disk_free_limit", "50MB"), "disk"),
}


@pytest.fixture
def alarmed(
    request: pytest.FixtureRequest, private_node: PrivateBroker, env: dict[str, str]
) -> Iterator[tuple[dict[str, str], str]]:
    """The job's environment on the private private_node, whose alarm `request.param` is raised once
    the queue exists; lifted afterwards."""
    raise_it, lift_it, word = ALARMS[request.param]
    job = {
        **env,
        "BROKER_URL": private_node.url,
        "BROKER_BLOCKED_SECONDS": "3",
    }
    declare(job)
    private_node.ctl(*raise_it)
    yield job, word
    private_node.ctl(*lift_it)


@pytest.mark.parametrize("alarmed", ["memory", "disk"], indirect=True)
def test_publish_under_an_alarm_names_it_gives_up_and_records_only_the_confirmed(
    alarmed: tuple[dict[str, str], str], private_node: PrivateBroker
) -> None:
    job, word = alarmed
    names = [f"item{number}.csv" for number in range(5)]

    blocked = jobkit(job, "publish", *names, timeout=60)

    assert blocked.returncode == ExitCode.CONFIG, blocked.stdout + blocked.stderr
    said = blocked.stderr
    assert f"RabbitMQ blocks publishing ({word} alarm)" in said, said
    assert "waiting up to 3 s (BROKER_BLOCKED_SECONDS)" in said, said
    assert "confirmed 0 of 5 items" in said and "blocked publishing for 3 s" in said, said
    record = json.loads(
        Path(job["OUTPUT_URL"], ".jobkit", f"{job['QUEUE']}.published.json").read_text()
    )
    assert record["confirmed"] == [], record

    private_node.ctl(*ALARMS[word][1])
    again = jobkit(job, "publish", *names, timeout=60)

    assert again.returncode == 0, again.stdout + again.stderr
    # Sent while blocked, they may have been queued when the connection closed: sent again.
    assert "had been sent before without a confirm and were sent again" in again.stdout
    assert 5 <= read_depths(private_node.url, job["QUEUE"])[0] <= 10


def _publish_unblocked(node: PrivateBroker, job: dict[str, str], name: str) -> None:
    """Publish `name` with the memory alarm lifted for the while."""
    node.ctl(*ALARMS["memory"][1])
    assert jobkit(job, "publish", name).returncode == 0
    node.ctl(*ALARMS["memory"][0])


@pytest.mark.parametrize("alarmed", ["memory"], indirect=True)
def test_a_worker_that_must_dead_letter_under_an_alarm_says_so_and_gives_the_item_back(
    alarmed: tuple[dict[str, str], str], private_node: PrivateBroker
) -> None:
    job, _ = alarmed
    _publish_unblocked(private_node, job, "missing.csv")  # missing: its worker must dead-letter it

    result = worker(job, timeout=60)

    assert result.returncode == ExitCode.RETRY, result.stderr
    assert (
        "RabbitMQ blocked this worker's publishing for 3 s (a memory or disk alarm)"
        in result.stderr
    )
    private_node.ctl(*ALARMS["memory"][1])
    # The dead letter it sent while blocked may reach the broker as the connection closes.
    assert settled_depths(private_node.url, job["QUEUE"], lambda depths: depths[0] == 1)[0] == 1


@pytest.mark.parametrize("alarmed", ["memory"], indirect=True)
def test_the_runner_says_while_a_worker_waits_on_a_blocked_publish(
    alarmed: tuple[dict[str, str], str], private_node: PrivateBroker
) -> None:
    job, _ = alarmed
    _publish_unblocked(private_node, job, "missing.csv")  # missing: its worker must dead-letter it
    job["BROKER_BLOCKED_SECONDS"] = "6"

    run = jobkit(job, "run", "--backoff-limit", "0", timeout=90)

    said = run.stdout
    assert "missing.csv: RabbitMQ has not confirmed" in said, said
    assert "a memory or disk alarm blocks publishing" in said, said
    assert run.returncode == ExitCode.RETRY, said
    private_node.ctl(*ALARMS["memory"][1])
    assert settled_depths(private_node.url, job["QUEUE"], lambda depths: depths[0] == 1)[0] == 1
