"""The kit's exceptions and the worker's exit codes, the one table every runner reads."""

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

# How a runner treats a failed worker, in the words of a Job's podFailurePolicy: "FailJob" stops
# the job, "Ignore" does not count against the backoff limit, "Count" (any other code) does.
FAILURE_ACTIONS: dict[ExitCode, str] = {
    ExitCode.CONFIG: "FailJob",  # retrying cannot fix the configuration
    ExitCode.DEAD: "Ignore",  # the item is dead-lettered; the worker did its part
}


def failure_action(code: int) -> str:
    """What a runner does when a worker exits with `code`: FailJob, Ignore or Count."""
    for exit_code, action in FAILURE_ACTIONS.items():
        if code == exit_code:
            return action
    return "Count"


class JobkitError(Exception):
    """Base of the kit's errors; its message is one sentence meant for the operator."""

    exit_code: ExitCode = ExitCode.RETRY


class ConfigError(JobkitError):
    """A setting is missing or malformed."""

    exit_code = ExitCode.CONFIG


class BrokerUnavailable(JobkitError):
    """RabbitMQ cannot be reached or refused the connection."""

    exit_code = ExitCode.CONFIG


class InputError(JobkitError):
    """The item's input can never be processed (missing, unreadable, malformed)."""

    exit_code = ExitCode.DEAD


class StorageError(JobkitError):
    """Reading or writing storage failed for a reason that may pass."""

    exit_code = ExitCode.RETRY


class TaskError(JobkitError):
    """The task failed in a way another try may not repeat (a program's exit 1, a timeout)."""

    exit_code = ExitCode.RETRY
