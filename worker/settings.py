"""The one settings object, read from environment variables."""

from __future__ import annotations

import logging
import os
import re
import shlex
from collections.abc import Callable, Mapping
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
DEFAULT_TASK = "aggregate"
# Under RabbitMQ's 30-minute delivery acknowledgement timeout, so the worker gives a hung item
# back itself, with a reason, before the broker closes its channel.
DEFAULT_TASK_TIMEOUT_SECONDS = 1500.0
_TASK_NAME = re.compile(r"[A-Za-z_][\w.-]*")  # a name registered under jobkit.tasks
_TASK_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")  # package.module:function
_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}

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
  TASK                  the task: a name registered under the entry-point group jobkit.tasks,
                        or package.module:function [{DEFAULT_TASK}: the hourly aggregation]
  TASK_COMMAND          instead, a program run per item, e.g. "wordcount {{input}} {{output_dir}}";
                        {{input}} is the input's path, {{output_dir}} where its outputs go,
                        {{item}} the item; exit 3 dead-letters the item, others retry it
  TASK_TIMEOUT_SECONDS  a program running longer is killed and its item retried
                        [{DEFAULT_TASK_TIMEOUT_SECONDS:g}]
  NO_INPUT              true: items are not files; the task gets the message body alone
                        and INPUT_URL is not read [false]
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
    task: str = DEFAULT_TASK
    task_command: str = ""
    task_timeout_seconds: float = DEFAULT_TASK_TIMEOUT_SECONDS
    no_input: bool = False

    @property
    def dead_queue(self) -> str:
        """The queue that keeps items which can never succeed."""
        return f"{self.queue}.dead"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from `env`; raises ConfigError naming every bad variable at once."""

        def get(name: str, default: str) -> str:
            return env.get(name, "").strip() or default

        problems: list[str] = []
        retry_seconds = _seconds(
            get, "BROKER_RETRY_SECONDS", DEFAULT_BROKER_RETRY_SECONDS, problems
        )
        if env.get("TASK", "").strip() and env.get("TASK_COMMAND", "").strip():
            problems.append("TASK and TASK_COMMAND are both set (set one: a function or a program)")
        no_input = get("NO_INPUT", "false").lower()
        if no_input not in _FLAGS:
            problems.append(f"NO_INPUT {no_input!r} is not true or false")
        max_input = get("MAX_INPUT_BYTES", str(DEFAULT_MAX_INPUT_BYTES))
        max_input_bytes = int(max_input) if max_input.isdigit() else 0
        settings = cls(
            broker_url=get("BROKER_URL", DEFAULT_BROKER_URL),
            broker_ca_file=get("BROKER_CA_FILE", ""),
            broker_retry_seconds=retry_seconds,
            queue=get("QUEUE", DEFAULT_QUEUE),
            input_url=get("INPUT_URL", DEFAULT_INPUT_URL),
            output_url=get("OUTPUT_URL", DEFAULT_OUTPUT_URL),
            log_level=get("LOG_LEVEL", "INFO").upper(),
            azure_connection_string=get("AZURE_STORAGE_CONNECTION_STRING", ""),
            azure_credentials_path=get("AZURE_CREDENTIALS_PATH", ""),
            azure_account=get("AZURE_STORAGE_ACCOUNT", ""),
            azure_blob_endpoint=get("AZURE_STORAGE_BLOB_ENDPOINT", ""),
            max_input_bytes=max_input_bytes,
            task=get("TASK", DEFAULT_TASK),
            task_command=get("TASK_COMMAND", ""),
            task_timeout_seconds=_seconds(
                get, "TASK_TIMEOUT_SECONDS", DEFAULT_TASK_TIMEOUT_SECONDS, problems, 0.001, 86400
            ),
            no_input=_FLAGS.get(no_input, False),
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
        return problems + self._task_problems()

    def _task_problems(self) -> list[str]:
        if not self.task_command:
            if _TASK_NAME.fullmatch(self.task) or _TASK_TARGET.fullmatch(self.task):
                return []
            return [f"TASK {self.task!r} is neither a task's name nor package.module:function"]
        try:
            words = shlex.split(self.task_command)
        except ValueError as exc:
            return [f"TASK_COMMAND {self.task_command!r} cannot be split into words ({exc})"]
        if not words or not words[0]:
            return [f"TASK_COMMAND {self.task_command!r} names no program"]
        if self.no_input and "{input}" in self.task_command:
            return [
                "TASK_COMMAND uses {input} but NO_INPUT is set, so items are not files "
                "(pass the item itself with {item})"
            ]
        return []

    def task_env(self) -> dict[str, str]:
        """The task's variables as a worker must see them; an empty value stands for unset."""
        command = bool(self.task_command)
        return {
            "TASK": "" if command else self.task,
            "TASK_COMMAND": self.task_command,
            "TASK_TIMEOUT_SECONDS": f"{self.task_timeout_seconds:g}" if command else "",
            "NO_INPUT": "true" if self.no_input else "",
        }

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
            "TASK": self.task,
            "TASK_COMMAND": self.task_command,
            "TASK_TIMEOUT_SECONDS": f"{self.task_timeout_seconds:g}",
            "NO_INPUT": str(self.no_input).lower(),
        }


def with_task(
    env: Mapping[str, str], task: str | None, command: str | None, no_input: bool
) -> dict[str, str]:
    """`env` with a task chosen on the command line, which replaces the environment's choice.

    Raises ConfigError when both a task and a command are given.
    """
    if task is not None and command is not None:
        raise ConfigError("Give --task or --command, not both.")
    chosen = dict(env)
    if task is not None or command is not None:
        chosen.pop("TASK", None)
        chosen.pop("TASK_COMMAND", None)
        chosen["TASK" if task is not None else "TASK_COMMAND"] = task or command or ""
    if no_input:
        chosen["NO_INPUT"] = "true"
    return chosen


def _seconds(
    get: Callable[[str, str], str],
    name: str,
    default: float,
    problems: list[str],
    low: float = 0.0,
    high: float = 3600.0,
) -> float:
    """The number of seconds in variable `name`; a problem is added when it is out of range."""
    text = get(name, f"{default:g}")
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not low <= seconds <= high:
        problems.append(f"{name} {text!r} is not a number of seconds ({low:g}-{high:g})")
        return default
    return seconds


def _raise_if_any(problems: list[str]) -> None:
    """One ConfigError naming every problem, so all can be fixed at once."""
    if problems:
        raise ConfigError("Bad configuration: " + "; ".join(problems) + ".")
