"""The one settings object, read from environment variables."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from worker.errors import ConfigError

DEFAULT_BROKER_URL = "amqp://guest:guest@localhost:5672/%2F"
DEFAULT_BROKER_RETRY_SECONDS = 30.0
DEFAULT_QUEUE = "temperature_job"
DEFAULT_INPUT_URL = "data/input"
DEFAULT_OUTPUT_URL = "data/output"
_CONTAINER_NAME = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")
DEFAULT_MAX_INPUT_BYTES = 256 * 1024 * 1024
MAX_QUEUE_NAME = 250  # AMQP allows 255 bytes; the dead-letter queue appends ".dead"

SETTINGS_HELP = f"""\
Environment:
  BROKER_URL            RabbitMQ, amqp:// or amqps:// [{DEFAULT_BROKER_URL}]
  BROKER_CA_FILE        CA certificates to verify an amqps:// broker [the system's]
  BROKER_RETRY_SECONDS  how long to retry an unreachable broker [{DEFAULT_BROKER_RETRY_SECONDS:g}]
  QUEUE                 the work queue; dead letters go to QUEUE.dead [{DEFAULT_QUEUE}]
  INPUT_URL             the inputs: a directory, file:// URL or az://container/prefix
                        [{DEFAULT_INPUT_URL}]
  OUTPUT_URL            where results go, the same forms [{DEFAULT_OUTPUT_URL}]
  MAX_INPUT_BYTES       inputs larger are dead-lettered unread [{DEFAULT_MAX_INPUT_BYTES}]
                        (a worker needs about 95 MB plus 3 times its input in memory)
  LOG_LEVEL             DEBUG, INFO, WARNING or ERROR [INFO]
Azure Blob Storage credentials for az:// URLs, first found wins:
  AZURE_STORAGE_CONNECTION_STRING  a storage account's connection string
  AZURE_CREDENTIALS_PATH           a JSON file {{"storage_account": ..., "account_key": ...}}
  AZURE_STORAGE_ACCOUNT            an account name, signed in with azure-identity
  AZURE_STORAGE_BLOB_ENDPOINT      the endpoint, if not https://ACCOUNT.blob.core.windows.net"""


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
    broker_ca_file: str = ""
    broker_retry_seconds: float = DEFAULT_BROKER_RETRY_SECONDS
    queue: str = DEFAULT_QUEUE
    input_url: str = DEFAULT_INPUT_URL
    output_url: str = DEFAULT_OUTPUT_URL
    log_level: str = "INFO"
    azure_connection_string: str = field(default="", repr=False)
    azure_credentials_path: str = ""
    azure_account: str = ""
    azure_blob_endpoint: str = ""
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

        retry = get("BROKER_RETRY_SECONDS", str(DEFAULT_BROKER_RETRY_SECONDS))
        problems = []
        try:
            retry_seconds = float(retry)
        except ValueError:
            retry_seconds = -1.0
        if not 0 <= retry_seconds <= 3600:
            problems.append(f"BROKER_RETRY_SECONDS {retry!r} is not a number of seconds (0-3600)")
        max_input = get("MAX_INPUT_BYTES", str(DEFAULT_MAX_INPUT_BYTES))
        max_input_bytes = int(max_input) if max_input.isdigit() else 0
        settings = cls(
            broker_url=get("BROKER_URL", DEFAULT_BROKER_URL),
            broker_ca_file=get("BROKER_CA_FILE", ""),
            broker_retry_seconds=max(retry_seconds, 0.0),
            queue=get("QUEUE", DEFAULT_QUEUE),
            input_url=get("INPUT_URL", DEFAULT_INPUT_URL),
            output_url=get("OUTPUT_URL", DEFAULT_OUTPUT_URL),
            log_level=get("LOG_LEVEL", "INFO").upper(),
            azure_connection_string=get("AZURE_STORAGE_CONNECTION_STRING", ""),
            azure_credentials_path=get("AZURE_CREDENTIALS_PATH", ""),
            azure_account=get("AZURE_STORAGE_ACCOUNT", ""),
            azure_blob_endpoint=get("AZURE_STORAGE_BLOB_ENDPOINT", ""),
            max_input_bytes=max_input_bytes,
        )
        problems += settings._problems()
        if max_input_bytes <= 0:
            problems.append(
                f"MAX_INPUT_BYTES {max_input!r} is not a positive whole number of bytes"
            )
        _raise_if_any(problems)
        return settings

    def _problems(self) -> list[str]:
        problems = []
        broker = urlsplit(self.broker_url)
        if broker.scheme not in ("amqp", "amqps") or not broker.hostname:
            problems.append(
                f"BROKER_URL {mask_url(self.broker_url)!r} is not an amqp:// or amqps:// URL "
                "with a host"
            )
        if self.broker_ca_file and not os.path.isfile(self.broker_ca_file):
            problems.append(f"BROKER_CA_FILE {self.broker_ca_file!r} is not a file")
        if len(self.queue.encode()) > MAX_QUEUE_NAME:
            problems.append(f"QUEUE is longer than {MAX_QUEUE_NAME} bytes")
        for name, url in (("INPUT_URL", self.input_url), ("OUTPUT_URL", self.output_url)):
            problems.extend(self._location_problems(name, url))
        if not isinstance(logging.getLevelName(self.log_level), int):
            problems.append(f"LOG_LEVEL {self.log_level!r} is not DEBUG, INFO, WARNING or ERROR")
        return problems

    def check_location(self, name: str, url: str) -> None:
        """Raise ConfigError unless `url` is a location these settings can open."""
        _raise_if_any(self._location_problems(name, url))

    def _location_problems(self, name: str, url: str) -> list[str]:
        parts = urlsplit(url)
        if parts.scheme in ("", "file"):
            return []
        if parts.scheme != "az":
            return [
                f"{name} {url!r} has an unsupported scheme {parts.scheme!r} "
                "(use a directory, a file:// URL or az://container/prefix)"
            ]
        problems = []
        if not _CONTAINER_NAME.fullmatch(parts.netloc):
            problems.append(
                f"{name} {url!r} does not name a valid container (3-63 lowercase letters, "
                "digits and single hyphens): use az://container/prefix"
            )
        credentials = (
            self.azure_connection_string,
            self.azure_credentials_path,
            self.azure_account,
        )
        if not any(credentials):
            problems.append(
                f"{name} is {url!r} but none of AZURE_STORAGE_CONNECTION_STRING, "
                "AZURE_CREDENTIALS_PATH or AZURE_STORAGE_ACCOUNT is set"
            )
        return problems

    def describe(self) -> dict[str, str]:
        """The settings as printable text, secrets masked."""
        return {
            "BROKER_URL": mask_url(self.broker_url),
            "BROKER_CA_FILE": self.broker_ca_file,
            "BROKER_RETRY_SECONDS": str(self.broker_retry_seconds),
            "QUEUE": self.queue,
            "INPUT_URL": self.input_url,
            "OUTPUT_URL": self.output_url,
            "LOG_LEVEL": self.log_level,
            "AZURE_STORAGE_CONNECTION_STRING": "(set)" if self.azure_connection_string else "",
            "AZURE_CREDENTIALS_PATH": self.azure_credentials_path,
            "AZURE_STORAGE_ACCOUNT": self.azure_account,
            "AZURE_STORAGE_BLOB_ENDPOINT": self.azure_blob_endpoint,
            "MAX_INPUT_BYTES": str(self.max_input_bytes),
        }


def _raise_if_any(problems: list[str]) -> None:
    """One ConfigError naming every problem, so all can be fixed at once."""
    if problems:
        raise ConfigError("Bad configuration: " + "; ".join(problems) + ".")
