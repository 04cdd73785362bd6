"""Shared fixtures: a real RabbitMQ (each test its own queue), directories, and the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pika
import pytest

from worker.settings import DEFAULT_BROKER_URL, Settings

BROKER_URL = os.environ.get("BROKER_URL") or DEFAULT_BROKER_URL
ROOT = Path(__file__).resolve().parent.parent


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 5672), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The broker at BROKER_URL; fails under CI=true and skips elsewhere when none answers."""
    if not _answers(BROKER_URL):
        message = f"No RabbitMQ answers at {BROKER_URL}; start one with 'make broker'."
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return BROKER_URL


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
def env(tmp_path: Path, broker_url: str, queue: str) -> dict[str, str]:
    """The environment a user would set for one job: broker, queue, input and output dirs."""
    (tmp_path / "in").mkdir()
    return {
        **os.environ,
        "BROKER_URL": broker_url,
        "QUEUE": queue,
        "INPUT_URL": str(tmp_path / "in"),
        "OUTPUT_URL": str(tmp_path / "out"),
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


def jobkit(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed `jobkit` command as a user would."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "jobkit"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=Path(env["INPUT_URL"]).parent,
    )


def worker(
    env: dict[str, str],
    *args: str,
    python_options: tuple[str, ...] = (),
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run one `python -m worker` process."""
    return subprocess.run(
        [sys.executable, *python_options, "-m", "worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


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
