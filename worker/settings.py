"""The one settings object, read from environment variables."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from worker.errors import ConfigError

DEFAULT_BROKER_URL = "amqp://guest:guest@localhost:5672/%2F"
DEFAULT_QUEUE = "temperature_job"
DEFAULT_INPUT_URL = "data/input"
DEFAULT_OUTPUT_URL = "data/output"
DEFAULT_MAX_INPUT_BYTES = 256 * 1024 * 1024
MAX_QUEUE_NAME = 250  # AMQP allows 255 bytes; the dead-letter queue appends ".dead"

SETTINGS_HELP = f"""\
Environment:
  BROKER_URL   AMQP URL of RabbitMQ (amqp:// or amqps://)   [{DEFAULT_BROKER_URL}]
  QUEUE        the work queue; dead letters go to QUEUE.dead [{DEFAULT_QUEUE}]
  INPUT_URL    where items' input files are: a directory or file:// URL [data/input]
  OUTPUT_URL   where results are written: a directory or file:// URL    [data/output]
  LOG_LEVEL    DEBUG, INFO, WARNING or ERROR                [INFO]
  MAX_INPUT_BYTES  inputs larger than this are dead-lettered unread [{DEFAULT_MAX_INPUT_BYTES}]
               (a worker needs about 95 MB plus 3 times its input in memory)"""


def mask_url(url: str) -> str:
    """Return `url` with any password replaced by `***`, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


@dataclass(frozen=True)
class Settings:
    """Everything the kit reads from the environment, validated once."""

    broker_url: str = DEFAULT_BROKER_URL
    queue: str = DEFAULT_QUEUE
    input_url: str = DEFAULT_INPUT_URL
    output_url: str = DEFAULT_OUTPUT_URL
    log_level: str = "INFO"
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES

    @property
    def dead_queue(self) -> str:
        """The queue that keeps items which can never succeed."""
        return f"{self.queue}.dead"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from `env`; raises ConfigError naming every bad variable at once."""

        def get(name: str, default: str) -> str:
            return env.get(name, "").strip() or default

        max_input = get("MAX_INPUT_BYTES", str(DEFAULT_MAX_INPUT_BYTES))
        max_input_bytes = int(max_input) if max_input.isdigit() else 0
        settings = cls(
            broker_url=get("BROKER_URL", DEFAULT_BROKER_URL),
            queue=get("QUEUE", DEFAULT_QUEUE),
            input_url=get("INPUT_URL", DEFAULT_INPUT_URL),
            output_url=get("OUTPUT_URL", DEFAULT_OUTPUT_URL),
            log_level=get("LOG_LEVEL", "INFO").upper(),
            max_input_bytes=max_input_bytes,
        )
        problems = settings._problems()
        if max_input_bytes <= 0:
            problems.append(
                f"MAX_INPUT_BYTES {max_input!r} is not a positive whole number of bytes"
            )
        if problems:
            raise ConfigError("Bad configuration: " + "; ".join(problems) + ".")
        return settings

    def _problems(self) -> list[str]:
        problems = []
        broker = urlsplit(self.broker_url)
        if broker.scheme not in ("amqp", "amqps") or not broker.hostname:
            problems.append(
                f"BROKER_URL {mask_url(self.broker_url)!r} is not an amqp:// or amqps:// URL "
                "with a host"
            )
        if len(self.queue.encode()) > MAX_QUEUE_NAME:
            problems.append(f"QUEUE is longer than {MAX_QUEUE_NAME} bytes")
        for name, url in (("INPUT_URL", self.input_url), ("OUTPUT_URL", self.output_url)):
            scheme = urlsplit(url).scheme
            if scheme not in ("", "file") and len(scheme) > 1:  # one letter: a Windows drive
                problems.append(
                    f"{name} {url!r} has an unsupported scheme {scheme!r} "
                    "(use a directory path or a file:// URL)"
                )
        if not isinstance(logging.getLevelName(self.log_level), int):
            problems.append(f"LOG_LEVEL {self.log_level!r} is not DEBUG, INFO, WARNING or ERROR")
        return problems

    def describe(self) -> dict[str, str]:
        """The settings as printable text, secrets masked."""
        return {
            "BROKER_URL": mask_url(self.broker_url),
            "QUEUE": self.queue,
            "INPUT_URL": self.input_url,
            "OUTPUT_URL": self.output_url,
            "LOG_LEVEL": self.log_level,
            "MAX_INPUT_BYTES": str(self.max_input_bytes),
        }
