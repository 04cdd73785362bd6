"""The `jobkit` commands' exit codes: their own, apart from the worker's (`jobkit-worker
--help`), though 1, 2 and 3 mean for a batch what they mean for one item."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobkit_publisher.queue.reconcile import Reconciliation


class CommandExit(IntEnum):
    """What a `jobkit` command's exit status tells a script."""

    DONE = 0
    UNFINISHED = 1
    CONFIG = 2
    NEEDS_YOU = 3
    UNACCOUNTED = 4


COMMAND_EXIT_HELP = """\
Exit codes of jobkit (the worker's are in 'jobkit-worker --help'):
  0  done: for status, every item published is done
  1  not finished: items still queued or held by workers, a run stopped
     early, or a failure worth trying again
  2  configuration error, a name not found, or the broker or store unreachable
  3  items need you: dead-lettered, or not published, each named with why
  4  not all accounted for: items published are neither done, dead-lettered
     nor queued ('jobkit status' names them)
  130 interrupted (Ctrl-C); 128+N after signal N"""


def status_exit(reconciliation: Reconciliation) -> CommandExit:
    """The exit status of `jobkit status`: the worst of what the reconciliation found. Without
    a record of what was published (items published by other tools), none can be missing."""
    if reconciliation.published is not None and not reconciliation.adds_up:
        return CommandExit.UNACCOUNTED
    if reconciliation.dead:
        return CommandExit.NEEDS_YOU
    if reconciliation.queued or reconciliation.in_flight:
        return CommandExit.UNFINISHED
    return CommandExit.DONE
