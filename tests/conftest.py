"""Shared fixtures: a real RabbitMQ (each test its own queue), directories, and the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pika
import pytest
from private_broker import PrivateBroker

from jobkit_worker.broker import REASON_HEADER, Session, dead_queue_name
from jobkit_worker.settings import DEFAULT_BROKER_URL, Settings

BROKER_URL = os.environ.get("BROKER_URL") or DEFAULT_BROKER_URL
ROOT = Path(__file__).resolve().parent.parent
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (  # Azurite's published development key
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_ENDPOINT = f"http://127.0.0.1:10000/{AZURITE_ACCOUNT}"
AZURITE_CONNECTION_STRING = (
    f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
    f"BlobEndpoint={AZURITE_ENDPOINT};"
)


def _require(host: str, port: int, what: str, how: str) -> None:
    """Fail under CI=true, skip elsewhere, when nothing answers at host:port."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError:
        message = f"No {what} answers at {host}:{port}; start it with '{how}'."
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def pytest_configure() -> None:
    """Let the commands the tests start be interrupted with SIGINT, as from a terminal, also
    when the suite itself runs in the background ('&', as make test's RabbitMQ 4 pass does),
    where the shell starts it with SIGINT ignored and every process it starts inherits that."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="module")
def private_node() -> Iterator[PrivateBroker]:
    """A RabbitMQ node of the module's own, for tests that raise its alarms or change its users;
    removed after the module."""
    node = PrivateBroker()
    node.start()
    yield node
    node.remove()


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The broker at BROKER_URL."""
    parts = urlsplit(BROKER_URL)
    _require(parts.hostname or "localhost", parts.port or 5672, "RabbitMQ", "make broker")
    return BROKER_URL


@pytest.fixture(scope="session")
def azurite() -> str:
    """Azurite's blob service on 127.0.0.1:10000; returns its connection string."""
    _require("127.0.0.1", 10000, "Azurite", "make azurite")
    return AZURITE_CONNECTION_STRING


@pytest.fixture
def queue(broker_url: str) -> Iterator[str]:
    """A fresh queue name; the queue and its dead-letter queue are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    for queue_name in (name, f"{name}.dead"):
        channel.queue_delete(queue_name)
    connection.close()


@pytest.fixture
def env(
    tmp_path: Path, broker_url: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The environment a user would set for one job: broker, queue, input and output dirs.

    The test runs in `tmp_path`, so what commands write beside them (logs) lands there.
    """
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    # As typed at a shell: not under make, whose hints would name its targets (make test runs this).
    shell = {name: value for name, value in os.environ.items() if not name.startswith("MAKE")}
    return {
        **shell,
        "BROKER_URL": broker_url,
        "QUEUE": queue,
        "INPUT_URL": str(tmp_path / "in"),
        "OUTPUT_URL": str(tmp_path / "out"),
        "LOG_LEVEL": "INFO",
        # Each test's queue is new; only the tests of crash safety wait for it to be safe.
        "NEW_QUEUE_WAIT_SECONDS": "0",
    }


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


def jobkit(
    env: dict[str, str], *args: str, timeout: float = 120, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run the installed `jobkit` command as a user would, `stdin` on its standard input."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "jobkit"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )


def worker(
    env: dict[str, str],
    *args: str,
    python_options: tuple[str, ...] = (),
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run one `jobkit-worker` process."""
    return subprocess.run(
        [sys.executable, *python_options, "-m", "jobkit_worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def status_counts(env: dict[str, str], *args: str) -> dict[str, object]:
    """`jobkit status --json`'s reconciliation, once its exit status is checked against it."""
    result = jobkit(env, "status", "--json", *args)
    counts = dict(json.loads(result.stdout)["reconciliation"]) if result.stdout else {}
    expected = (
        4
        if counts.get("published") is not None and not counts.get("adds_up")
        else 3
        if counts["dead_lettered"]
        else 1
        if counts["queued"] or counts["in_flight"]
        else 0
    )
    assert result.returncode == expected, result.stdout + result.stderr
    return counts


def declare(env: dict[str, str]) -> None:
    """Declare the job's queues as the kit does, publishing nothing."""
    with Session(Settings.from_env(env), "test") as session:
        session.declare(env["QUEUE"])


def read_depths(broker_url: str, queue: str) -> tuple[int, int]:
    """(ready in the queue, ready in its dead-letter queue)."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    depths = tuple(
        int(channel.queue_declare(name, passive=True).method.message_count)
        for name in (queue, f"{queue}.dead")
    )
    connection.close()
    return depths[0], depths[1]


SETTLE_SECONDS = 60.0  # for the broker to settle what a process did before it ended


def settled_depths(
    broker_url: str,
    queue: str,
    expected: tuple[int, int] | Callable[[tuple[int, int]], bool],
) -> tuple[int, int]:
    """(ready in the queue, ready in its dead-letter queue) once they are `expected` (or
    satisfy it), or as they are after SETTLE_SECONDS.

    The broker settles what a process did (an ack, a message returned by a closed connection)
    a moment after the process has ended, later still on a loaded machine: a test that reads
    the depths right away may read them before.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        depths = read_depths(broker_url, queue)
        settled = expected(depths) if callable(expected) else depths == expected
        if settled or time.monotonic() > deadline:
            return depths
        time.sleep(0.1)


def last_outcome(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """The outcome a worker printed last, as JSON."""
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def dead_letter_reasons(broker_url: str, queue: str) -> list[str]:
    """The reason of every dead letter of work queue `queue`, in order; they stay there."""
    dead_queue = dead_queue_name(queue)
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    reasons = []
    while True:
        method, properties, _ = channel.basic_get(dead_queue, auto_ack=False)
        if method is None:
            break
        reasons.append(str(properties.headers[REASON_HEADER]))
    connection.close()
    return reasons


def failing_once(env: dict[str, str], state: Path, items: str) -> dict[str, str]:
    """`env` with the task of tests/fail_once.py: `items` fail their first attempt."""
    state.mkdir(parents=True, exist_ok=True)
    return {
        **env,
        "TASK": "fail_once:aggregate_failing_once",
        "PYTHONPATH": str(ROOT / "tests"),
        "FAIL_ONCE_DIR": str(state),
        "FAIL_ONCE_ITEMS": items,
    }


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (mount's spelling: "4k") mounted at `path`, made here, to fill; skips
    the test where this machine does not let it mount one."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
