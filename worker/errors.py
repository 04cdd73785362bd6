"""The kit's exceptions and the worker's exit codes, the one table every runner reads."""

import signal
from enum import IntEnum


class ExitCode(IntEnum):
    """What a worker's exit status means to the local runner and to a Job's podFailurePolicy."""

    DONE = 0  # the item is done and acked, or the queue was empty
    RETRY = 1  # transient failure: the message went back to the queue for another try
    CONFIG = 2  # configuration error or unreachable broker: no message was taken
    DEAD = 3  # the item can never succeed: it was dead-lettered with the reason


EXIT_CODE_HELP = """\
Exit codes:
  0  the item is done and acked, or the queue was empty
  1  transient failure; the message went back to the queue for another try
  2  configuration error or unreachable broker; no message was taken
  3  the item can never succeed; it was dead-lettered with the reason"""


def describe_exit_status(code: int) -> str:
    """'exited 1', or 'was killed by SIGKILL' for a negative status (a process killed)."""
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited {code}"


class JobkitError(Exception):
    """Base of the kit's errors; its message is one sentence meant for the operator."""

    exit_code: ExitCode = ExitCode.RETRY


class ConfigError(JobkitError):
    """A setting is missing or malformed."""

    exit_code = ExitCode.CONFIG


class BrokerUnavailable(JobkitError):
    """RabbitMQ cannot be reached or refused the connection."""

    exit_code = ExitCode.CONFIG


class BrokerLost(JobkitError):
    """The connection to RabbitMQ failed while in use; what was unacked goes back to the queue."""

    exit_code = ExitCode.RETRY
    item: str | None = None  # the item held when it failed, if any
    ends_drain = False  # True when the worker must not take another item (a task runs on)
    stopped_seconds = 0.0  # how long this process did not run meanwhile (SIGSTOP, a suspend)


class AckTimedOut(BrokerLost):
    """RabbitMQ took a held message back: it was held past the delivery acknowledgement
    timeout (consumer_timeout), `limit_seconds` if the broker said."""

    ends_drain = True  # its channel is gone; the next worker starts afresh

    def __init__(self, message: str, limit_seconds: float | None) -> None:
        super().__init__(message)
        self.limit_seconds = limit_seconds


class InputError(JobkitError):
    """The item's input can never be processed (missing, unreadable, malformed)."""

    exit_code = ExitCode.DEAD


class StorageError(JobkitError):
    """Reading or writing storage failed for a reason that may pass."""

    exit_code = ExitCode.RETRY


class StoreUnavailable(StorageError):
    """The store cannot serve anyone for now (throttled, unreachable, a location that changed
    under the worker): not the item's fault, so the item goes back without spending one of its
    deliveries."""


class TaskError(JobkitError):
    """The task failed in a way another try may not repeat (a program's exit 1, a timeout)."""

    exit_code = ExitCode.RETRY
