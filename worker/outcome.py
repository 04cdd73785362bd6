"""What one worker's go at an item came to: the one spelling every runner, record and report
uses, and the JSON line a worker prints for each item."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from jobkit_worker.errors import ExitCode


class Verdict(StrEnum):
    """The outcome of one go at an item (or at an empty queue)."""

    DONE = "done"  # the item was done, stored and acked
    ALREADY_DONE = "already_done"  # a copy of an item already done from this input: acked only
    EMPTY = "empty"  # the queue was empty: a success without an item
    RETRY = "retry"  # a transient failure: back to the queue, counted against the backoff limit
    CONFIG = "config"  # a configuration error: no message taken, and the job stops
    DEAD = "dead"  # dead-lettered with the reason: not counted against the backoff limit

    @property
    def exit_code(self) -> ExitCode:
        return _EXIT_CODES[self]

    @property
    def succeeded(self) -> bool:
        """True for the verdicts a Job counts as a completion (the worker exits 0)."""
        return self.exit_code is ExitCode.DONE

    @classmethod
    def of_exit(cls, code: int | None) -> Verdict:
        """The verdict on a worker that ended with `code` without saying more (None: killed
        before it had one); a crash is a transient failure."""
        for verdict in (cls.EMPTY, cls.CONFIG, cls.DEAD):
            if code == verdict.exit_code:
                return verdict
        return cls.RETRY


_EXIT_CODES = {
    Verdict.DONE: ExitCode.DONE,
    Verdict.ALREADY_DONE: ExitCode.DONE,
    Verdict.EMPTY: ExitCode.DONE,
    Verdict.RETRY: ExitCode.RETRY,
    Verdict.CONFIG: ExitCode.CONFIG,
    Verdict.DEAD: ExitCode.DEAD,
}


@dataclass(frozen=True)
class Outcome:
    """What one worker run did; printed as one JSON line on stdout for runners to read."""

    verdict: Verdict
    item: str | None = None
    reason: str = ""
    delivery: int = 0  # how many times the broker had delivered the message, this time included
    seconds: float = 0.0
    took_at: float | None = None  # wall-clock (Unix) time the message was taken
    phases: dict[str, float] = field(default_factory=dict)  # seconds of read, task, store
    # The same on this host's monotonic clock, which no clock step moves: a runner on the host
    # places attempts by it.
    took_monotonic: float | None = None

    @property
    def code(self) -> ExitCode:
        return self.verdict.exit_code

    def to_json(self) -> str:
        fields = dict(vars(self))  # not asdict, which deep-copies: a line per item
        fields["outcome"] = str(fields.pop("verdict"))
        return json.dumps({**fields, "code": int(self.code)})

    @classmethod
    def from_json(cls, line: str) -> Outcome | None:
        """The outcome a worker printed as `line`, or None when the line is not one."""
        try:
            fields: Any = json.loads(line)
            phases = {str(name): float(value) for name, value in (fields["phases"]).items()}
            took_at, took_monotonic = fields["took_at"], fields.get("took_monotonic")
            return cls(
                verdict=Verdict(fields["outcome"]),
                item=None if fields["item"] is None else str(fields["item"]),
                reason=str(fields["reason"]),
                delivery=int(fields["delivery"]),
                seconds=float(fields["seconds"]),
                took_at=None if took_at is None else float(took_at),
                phases=phases,
                took_monotonic=None if took_monotonic is None else float(took_monotonic),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def notice_line(text: str) -> str:
    """The JSON line a worker prints while it waits on something its runner should show."""
    return json.dumps({"notice": text})


def read_notice(line: str) -> str | None:
    """The notice a worker printed as `line`, or None when the line is not one."""
    notice = _field(line, "notice")
    return notice if isinstance(notice, str) else None


def end_line(code: int) -> str:
    """The JSON line a worker run with an outcome channel prints last, after every outcome: a
    worker that ends without it was ended by something else (a task that ended the process,
    a crash, a kill)."""
    return json.dumps({"end": code})


def read_end(line: str) -> int | None:
    """The exit code an end line `line` gives, or None when the line is not one."""
    code = _field(line, "end")
    return code if isinstance(code, int) else None


def _field(line: str, key: str) -> object:
    """The value under `key` of the JSON object `line`, or None."""
    try:
        return json.loads(line).get(key)
    except (ValueError, AttributeError):
        return None


def drain_exit_code(outcomes: list[Outcome]) -> ExitCode:
    """RETRY if an item failed transiently, else DEAD if one was dead-lettered, else DONE."""
    codes = {outcome.code for outcome in outcomes}
    for code in (ExitCode.RETRY, ExitCode.DEAD):
        if code in codes:
            return code
    return ExitCode.DONE
