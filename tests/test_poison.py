"""Poison items beside good ones: each is dead-lettered with a reason naming its problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import jobkit, settled_depths

from jobkit_worker.broker import Session
from jobkit_worker.builtin.aggregate import aggregate_csv
from jobkit_worker.errors import ExitCode
from jobkit_worker.settings import Settings

pytestmark = pytest.mark.rabbitmq

HEADER = "Datetime,Temperature\n"
GOOD = HEADER + "2017-12-01 00:00:00,4.5\n2017-12-01 01:30:00,5.5\n"
# file name -> (content, what the dead letter's reason must say)
POISON_FILES = {
    "empty.csv": (b"", "the file is empty"),
    "header-only.csv": (HEADER.encode(), "there are no readings below the header"),
    "wrong-header.csv": (b"time,temp\n2017-12-01 00:00:00,1\n", "but the header is 'time,temp'"),
    "dates.csv": (
        (HEADER + "01/12/2017 00:00,1\n").encode(),
        "line 2: Datetime '01/12/2017 00:00' is not in the form %Y-%m-%d %H:%M:%S",
    ),
    "numbers.csv": ((HEADER + "2017-12-01 00:00:00,warm\n").encode(), "'warm' is not a number"),
    "garbage.csv": (bytes(range(256)) * 8, "binary data, not a CSV"),
    "big.csv": (
        (HEADER + "2017-12-01 00:00:00,1.0\n" * 2_000).encode(),
        "48,021 bytes is more than MAX_INPUT_BYTES (10,000)",
    ),
}
# message body -> what the reason must say (items that never name a readable file)
POISON_BODIES = {
    b"missing.csv": "missing.csv: no such file",
    b"../outside.csv": "must be a relative path of file names, without '..'",
    b"\xffnot-utf8.csv": "is not UTF-8 text",
}


def _publish_raw(env: dict[str, str], bodies: list[bytes]) -> None:
    """Publish bodies as another tool would (jobkit publish refuses unsafe names itself)."""
    with Session(Settings.from_env(env), "test") as session:
        session.declare(env["QUEUE"])
        for body in bodies:
            session.publish(env["QUEUE"], body)


def test_every_poison_item_is_dead_lettered_with_its_reason_and_the_good_ones_are_done(
    env: dict[str, str],
) -> None:
    inputs = Path(env["INPUT_URL"])
    good = [f"good{index}.csv" for index in range(3)]
    for name in good:
        (inputs / name).write_text(GOOD)
    for name, (content, _) in POISON_FILES.items():
        (inputs / name).write_bytes(content)
    env = {**env, "MAX_INPUT_BYTES": "10000"}
    assert jobkit(env, "publish").returncode == 0
    _publish_raw(env, list(POISON_BODIES))

    result = jobkit(env, "run", "--parallelism", "2", timeout=300)

    assert result.returncode == ExitCode.DEAD, result.stdout + result.stderr
    assert f"{len(good)} done, {len(POISON_FILES) + len(POISON_BODIES)} dead-lettered" in (
        result.stdout
    ), result.stdout
    letters = json.loads(jobkit(env, "dead", "list", "--json").stdout)["dead_letters"]
    reasons = {str(letter["item"]): str(letter["reason"]) for letter in letters}
    for name, (_, expected) in POISON_FILES.items():
        assert name in reasons, f"{name} was not dead-lettered: {reasons}"
        assert reasons[name].startswith(f"{name}: ") and expected in reasons[name], reasons[name]
    for expected in POISON_BODIES.values():
        assert sum(expected in reason for reason in reasons.values()) == 1, (expected, reasons)
    assert all(letter["deliveries"] == 1 for letter in letters), "input errors are not retried"
    for name in good:
        output = Path(env["OUTPUT_URL"], name.replace(".csv", "_aggregated.csv"))
        assert output.read_bytes() == aggregate_csv(GOOD.encode())
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (0, len(letters))) == (0, len(letters))
