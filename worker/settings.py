"""The one settings object, read from environment variables.

Each setting is declared once, as a field with its variable's name, default and help; reading the
environment, describing the settings (secrets masked) and the help text all come from those.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shlex
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from jobkit_worker.builtin import DEFAULT_MAX_SPAN_HOURS
from jobkit_worker.errors import ConfigError
from jobkit_worker.storage.base import location_problems

DEFAULT_BROKER_URL = "amqp://guest:guest@localhost:5672/%2F"
DEFAULT_TASK = "aggregate"
DEAD_QUEUE_SUFFIX = ".dead"  # QUEUE's dead letters go to QUEUE + this
TURN_SUFFIX = ".peek"  # QUEUE + this exists while a reader holds QUEUE's dead letters
MAX_QUEUE_NAME = 255 - len(DEAD_QUEUE_SUFFIX)  # AMQP allows 255 bytes
_TASK_NAME = re.compile(r"[A-Za-z_][\w.-]*")  # a name registered under jobkit.tasks
_TASK_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")  # package.module:function
_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_HELP_WIDTH = 77  # and 2 more where jobkit indents it
_NAME_WIDTH = 22


def mask_url(url: str) -> str:
    """Return `url` (or a comma-separated list of URLs) with any password replaced by `***`,
    for logs and messages."""
    return ",".join(_mask_one(one) for one in url.split(","))


def _mask_one(url: str) -> str:
    # Before any parsing: a password with an unencoded '/', '#' or '?' is not where a URL
    # parser looks for one. Everything up to the last '@' after the scheme is credentials.
    userinfo, host = _credentials(url)
    if ":" not in userinfo:
        return url
    scheme = url.strip().partition("://")[0]
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def _credentials(url: str) -> tuple[str, str]:
    """(user:password, the rest) of `url`, split at the last '@'; ("", url) without one."""
    _, separator, rest = url.strip().partition("://")
    userinfo, at, host = rest.rpartition("@")
    return (userinfo, host) if separator and at else ("", url)


@dataclass(frozen=True)
class _Variable:
    """How one setting is read from, and shown as, its environment variable."""

    name: str
    help: str
    parse: Callable[[str], Any]  # raises ValueError with the expected form
    show: Callable[[Any], str]  # as printed in descriptions: secrets masked
    secret: bool


def _text(value: str) -> str:
    return value


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not low <= seconds <= high:
            raise ValueError(f"is not a number of seconds ({low:g}-{high:g})")
        return seconds

    return parse


def _positive(unit: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not value.isdigit() or int(value) <= 0:
            raise ValueError(f"is not a positive whole number of {unit}")
        return int(value)

    return parse


def _flag(value: str) -> bool:
    if value.lower() not in _FLAGS:
        raise ValueError("is not true or false")
    return _FLAGS[value.lower()]


def _level(value: str) -> str:
    if not isinstance(logging.getLevelName(value.upper()), int):
        raise ValueError("is not DEBUG, INFO, WARNING or ERROR")
    return value.upper()


def _shown_as_set(value: str) -> str:
    return "(set)" if value else ""


def _setting(
    name: str,
    default: Any,
    help: str,
    parse: Callable[[str], Any] = _text,
    show: Callable[[Any], str] = str,
    secret: bool = False,
) -> Any:
    """A settings field read from variable `name`; `help` is its line in the help text."""
    variable = _Variable(name, help, parse, show, secret)
    return dataclasses.field(default=default, repr=not secret, metadata={"variable": variable})


@dataclass(frozen=True)
class Settings:
    """Everything the kit reads from the environment, validated once."""

    broker_url: str = _setting(
        "BROKER_URL",
        DEFAULT_BROKER_URL,
        "RabbitMQ, amqp:// or amqps://; several nodes of a cluster comma-separated, tried in turn",
        show=mask_url,
        secret=True,
    )
    broker_ca_file: str = _setting(
        "BROKER_CA_FILE", "", "CA certificates to verify an amqps:// broker [the system's]"
    )
    broker_retry_seconds: float = _setting(
        "BROKER_RETRY_SECONDS",
        30.0,
        "how long to retry an unreachable broker",
        _seconds(0, 3600),
        show="{:g}".format,
    )
    broker_blocked_seconds: float = _setting(
        "BROKER_BLOCKED_SECONDS",
        60.0,
        "how long to wait while RabbitMQ blocks publishing (a memory or disk alarm) before "
        "giving up",
        _seconds(1, 3600),
        show="{:g}".format,
    )
    new_queue_wait_seconds: float | None = _setting(
        "NEW_QUEUE_WAIT_SECONDS",
        None,
        "after creating the work queue, how long 'jobkit publish' waits before it reports "
        "messages confirmed: a quorum queue younger loses them if its only node crashes "
        "[30 on RabbitMQ 3, 10 on 4, 0 where BROKER_URL names several nodes; 0 for none]",
        _seconds(0, 600),
        show=lambda value: "" if value is None else f"{value:g}",
    )
    queue: str = _setting(
        "QUEUE", "temperature_job", "the work queue; dead letters go to QUEUE.dead"
    )
    input_url: str = _setting(
        "INPUT_URL",
        "data/input",
        "the inputs: a directory, file:// URL or az://container/prefix",
    )
    output_url: str = _setting("OUTPUT_URL", "data/output", "where results go, the same forms")
    log_level: str = _setting("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR", _level)
    max_input_bytes: int = _setting(
        "MAX_INPUT_BYTES",
        256 * 1024 * 1024,
        "inputs larger are dead-lettered unread (a worker needs about 95 MB plus 3 times its "
        "input in memory)",
        _positive("bytes"),
    )
    max_span_hours: int = _setting(
        "MAX_SPAN_HOURS",
        DEFAULT_MAX_SPAN_HOURS,
        "the built-in aggregation dead-letters an input whose readings span more hours (ten "
        "years by default: a mistyped year would make a result of millions of empty hours)",
        _positive("hours"),
    )
    task: str = _setting(
        "TASK",
        DEFAULT_TASK,
        "the task: a name registered under the entry-point group jobkit.tasks, or "
        "package.module:function (aggregate: the hourly aggregation)",
    )
    task_command: str = _setting(
        "TASK_COMMAND",
        "",
        'instead, a program run per item, e.g. "wordcount {input} {output_dir}"; {input} is '
        "the input's path, {output_dir} where its outputs go, {item} the item; exit 3 "
        "dead-letters the item, others retry it",
    )
    # Under the broker's delivery acknowledgement timeout, so the worker gives a hung item back
    # itself, with a reason, before the broker closes its channel.
    task_timeout_seconds: float = _setting(
        "TASK_TIMEOUT_SECONDS",
        1500.0,
        "a program running longer is killed and its item retried",
        _seconds(0.001, 86400),
        show="{:g}".format,
    )
    task_log_bytes: int = _setting(
        "TASK_LOG_BYTES",
        65536,
        "of each output stream of a program, an item's log keeps the first and last half of this "
        "many bytes, saying how much it left out between them",
        _positive("bytes"),
    )
    broker_ack_timeout_seconds: float = _setting(
        "BROKER_ACK_TIMEOUT_SECONDS",
        1800.0,
        "the broker's delivery acknowledgement timeout (consumer_timeout), which "
        "TASK_TIMEOUT_SECONDS must stay below; the RabbitMQ 'jobkit manifests' renders uses it",
        _seconds(1, 7 * 86400),
        show="{:g}".format,
    )
    no_input: bool = _setting(
        "NO_INPUT",
        False,
        "true: items are not files; the task gets the message body alone and INPUT_URL is not read",
        _flag,
        show=lambda value: str(value).lower(),
    )
    azure_connection_string: str = _setting(
        "AZURE_STORAGE_CONNECTION_STRING",
        "",
        "for az:// URLs (the first of these three found wins): a storage account's connection "
        "string",
        show=_shown_as_set,
        secret=True,
    )
    azure_credentials_path: str = _setting(
        "AZURE_CREDENTIALS_PATH",
        "",
        'a JSON file {"storage_account": ..., "account_key": ...}, as the AKS blog\'s workers read',
    )
    azure_account: str = _setting(
        "AZURE_STORAGE_ACCOUNT", "", "an account name, signed in with azure-identity"
    )
    azure_blob_endpoint: str = _setting(
        "AZURE_STORAGE_BLOB_ENDPOINT",
        "",
        "the endpoint, if not https://ACCOUNT.blob.core.windows.net",
    )

    @property
    def broker_urls(self) -> list[str]:
        """The nodes BROKER_URL names, in the order to try them."""
        return [url.strip() for url in self.broker_url.split(",")]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from `env`; raises ConfigError naming every bad variable at once."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        for field, variable in _variables():
            if variable.name not in env:
                continue
            text = env[variable.name].strip()
            if not text:  # an unset shell variable, most likely: never quietly the default
                problems.append(
                    f"{variable.name} is set but empty (unset it for the default, "
                    f"{variable.show(field.default) or 'none'})"
                )
                continue
            try:
                values[field.name] = variable.parse(text)
            except ValueError as exc:
                problems.append(f"{variable.name} {text!r} {exc}")
        if "task" in values and "task_command" in values:
            problems.append("TASK and TASK_COMMAND are both set (set one: a function or a program)")
        settings = cls(**values)
        _raise_if_any(problems + settings._problems())
        return settings

    def _problems(self) -> list[str]:
        problems = []
        for url in self.broker_urls:
            userinfo, _ = _credentials(url)
            if any(char in userinfo for char in "/#?"):
                problems.append(
                    f"BROKER_URL {mask_url(url)!r} has a user or password holding '/', '#' or "
                    "'?': percent-encode them (%2F, %23, %3F; '@' is %40)"
                )
                continue
            broker = urlsplit(url)
            if broker.scheme not in ("amqp", "amqps") or not broker.hostname:
                problems.append(
                    f"BROKER_URL {mask_url(url)!r} is not an amqp:// or amqps:// URL with a host"
                )
                continue
            if not _has_valid_port(broker):
                problems.append(f"BROKER_URL {mask_url(url)!r} has no valid port (up to 65535)")
        if self.broker_ca_file and not os.path.isfile(self.broker_ca_file):
            problems.append(f"BROKER_CA_FILE {self.broker_ca_file!r} is not a file")
        if len(self.queue.encode()) > MAX_QUEUE_NAME:
            problems.append(f"QUEUE is longer than {MAX_QUEUE_NAME} bytes")
        if self.queue.endswith(DEAD_QUEUE_SUFFIX):
            problems.append(
                f"QUEUE {self.queue!r} ends with {DEAD_QUEUE_SUFFIX!r}, the mark of a dead-letter "
                "queue (its dead letters would go to a queue named like another's); name the "
                "work queue itself"
            )
        if self.task_timeout_seconds >= self.broker_ack_timeout_seconds:
            problems.append(
                f"TASK_TIMEOUT_SECONDS ({self.task_timeout_seconds:g} s) is not below the "
                f"broker's acknowledgement timeout ({self.broker_ack_timeout_seconds:g} s, "
                "BROKER_ACK_TIMEOUT_SECONDS): RabbitMQ would take an item back while its program "
                "still runs; lower it, or raise consumer_timeout on the broker and "
                "BROKER_ACK_TIMEOUT_SECONDS with it"
            )
        for name, url in (("INPUT_URL", self.input_url), ("OUTPUT_URL", self.output_url)):
            problems.extend(location_problems(name, url, self))
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

    @property
    def task_label(self) -> str:
        """The task in one string, as success records keep it: the program, or TASK."""
        return self.task_command or self.task

    def to_env(self) -> dict[str, str]:
        """The variables that give these settings again, secrets included; defaults left out."""
        defaults = Settings()._env()
        return {name: value for name, value in self._env().items() if value != defaults[name]}

    def task_env(self) -> dict[str, str]:
        """The variables that choose the task, as a worker elsewhere (a pod) must see them."""
        chosen = (
            ["TASK_COMMAND", "TASK_TIMEOUT_SECONDS", "BROKER_ACK_TIMEOUT_SECONDS"]
            if self.task_command
            else ["TASK"]
        )
        env = self._env()
        return {name: env[name] for name in chosen} | (
            {"NO_INPUT": "true"} if self.no_input else {}
        )

    def _env(self) -> dict[str, str]:
        env = {}
        for field, variable in _variables():
            value = getattr(self, field.name)
            env[variable.name] = str(value) if variable.secret else variable.show(value)
        return env

    def check_location(self, name: str, url: str) -> None:
        """Raise ConfigError unless `url` is a location these settings can open."""
        _raise_if_any(location_problems(name, url, self))

    def describe(self) -> dict[str, str]:
        """The settings as printable text, secrets masked."""
        return {
            variable.name: variable.show(getattr(self, field.name))
            for field, variable in _variables()
        }


def _has_valid_port(url: SplitResult) -> bool:
    """True unless the URL gives a port that is not a number up to 65535."""
    try:
        return url.port is None or 0 <= url.port <= 65535  # port raises for other text
    except ValueError:
        return False


def _variables() -> list[tuple[dataclasses.Field[Any], _Variable]]:
    return [(field, field.metadata["variable"]) for field in dataclasses.fields(Settings)]


def setting_names() -> list[str]:
    """Every variable the settings read, in the order of the help."""
    return [variable.name for _field, variable in _variables()]


def settings_help() -> str:
    """The settings' part of a command's help: each variable, what it is, and its default."""
    lines = ["Environment:"]
    for field, variable in _variables():
        default = variable.show(field.default)
        text = variable.help + (f" [{default}]" if default and "[" not in variable.help else "")
        wrapped = textwrap.wrap(text, _HELP_WIDTH - _NAME_WIDTH - 2)
        lines.append(f"  {variable.name:<{_NAME_WIDTH}}{wrapped[0]}")
        if len(variable.name) >= _NAME_WIDTH:
            lines[-1] = f"  {variable.name}\n{'':<{_NAME_WIDTH + 2}}{wrapped[0]}"
        lines += [f"{'':<{_NAME_WIDTH + 2}}{line}" for line in wrapped[1:]]
    return "\n".join(lines)


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


def _raise_if_any(problems: list[str]) -> None:
    """One ConfigError naming every problem, so all can be fixed at once."""
    if problems:
        raise ConfigError("Bad configuration: " + "; ".join(problems) + ".")
