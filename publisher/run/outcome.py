"""What a run did, whichever runner ran it: the job's report and each worker's attempt, counted
by the worker's verdict (done, already done, empty, dead-lettered, retried, or fatal)."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobkit_worker.errors import ExitCode, describe_exit_status
from jobkit_worker.outcome import Outcome, Verdict


def describe_worker_exit(code: int) -> str:
    """Why a worker that printed no outcome ended: 'worker was killed by SIGKILL'."""
    return f"worker {describe_exit_status(code)}"


@dataclass(frozen=True)
class Attempt:
    """One worker's go at one item, or at an empty queue, on one lane (worker slot)."""

    lane: int  # the worker slot, 0 to parallelism - 1
    spawned: float  # when the worker process was started
    finished: float  # when this attempt ended
    outcome: Verdict
    item: str = ""
    reason: str = ""
    took: float | None = None  # when the worker took the message; None when it took none
    phases: dict[str, float] = field(default_factory=dict)  # seconds of read, task, store

    @classmethod
    def of(
        cls, outcome: Outcome, lane: int, spawned: float, now: float, took: float | None
    ) -> Attempt:
        """The attempt `outcome` describes, its message taken at `took`: it ends `seconds`
        after."""
        return cls(
            lane=lane,
            spawned=spawned,
            finished=now if took is None else took + outcome.seconds,
            outcome=outcome.verdict,
            item=outcome.item or "",
            reason=outcome.reason,
            took=took,
            phases=outcome.phases,
        )


@dataclass
class JobReport:
    """What a run did: the counts a Job's status would show, plus the items and reasons."""

    completions: int
    parallelism: int
    backoff_limit: int
    done: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)  # copies acked without redoing them
    empty: int = 0  # workers that found the queue empty: successes without an item
    dead: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (item or "", reason)
    running: int = 0
    queued: int = 0
    dead_letters_before: int = 0
    dead_letters_after: int = 0
    seconds: float = 0.0
    stopped: str = ""  # why the run stopped early, empty when it ran to the end
    stop_code: int = ExitCode.DONE  # the run's exit code when it stopped early (130: Ctrl-C)
    # What the batch's reconciliation at the run's end tells, as 'jobkit status' exits by it
    # (4: not all accounted for, 1: items still queued or held): the run's exit never says less.
    ledger_code: int = 0
    started_at: float = 0.0  # Unix time
    attempts: list[Attempt] = field(default_factory=list)  # one per worker outcome, in order
    notices: list[str] = field(default_factory=list)  # what workers said while they waited

    @property
    def items_done(self) -> int:
        """Items done, by this run or before it: the copy of an item whose ack was lost, acked
        when it came back, is the same item."""
        return len(set(self.done) | set(self.already_done))

    @property
    def finished(self) -> int:
        """Items settled: done, found done already, or dead-lettered, each counted once."""
        return len(set(self.done) | set(self.already_done) | {item for item, _ in self.dead})

    @property
    def completed(self) -> int:
        """What counts towards the completions, as a Job counts its pods: every message
        settled, whatever became of it (a copy acked as done already included), and workers
        that found the queue empty."""
        return len(self.done) + len(self.already_done) + len(self.dead) + self.empty

    @property
    def remaining(self) -> int:
        """Items not finished: queued, or held by a running worker. A worker just started may
        not have taken its item from the queue yet, so no more than the job has left."""
        finished = self.finished
        left = max(self.completions, finished + self.queued) - finished
        return min(self.queued + self.running, left)

    def count(self, verdict: Verdict, item: str, reason: str) -> None:
        """Count one worker's outcome."""
        if verdict is Verdict.DONE:
            self.done.append(item)
        elif verdict is Verdict.ALREADY_DONE:
            self.already_done.append(item)
        elif verdict is Verdict.EMPTY:
            self.empty += 1
        elif verdict is Verdict.DEAD:
            self.dead.append((item, reason))
        elif verdict is Verdict.CONFIG:
            self.stop(ExitCode.CONFIG, f"configuration error: {reason}")
        else:
            self.failures.append((item, reason))

    def stop(self, code: int, reason: str) -> None:
        """Stop the run early with exit `code`; the first reason given is kept."""
        if not self.stopped:
            self.stopped, self.stop_code = reason, code

    @property
    def exit_code(self) -> int:
        """The stop's code if stopped early; else the worse of DEAD (for dead letters) or DONE
        and what the reconciliation told."""
        if self.stopped:
            return self.stop_code
        own = (
            ExitCode.DEAD if self.dead or self.dead_letters_after > self.dead_letters_before else 0
        )
        return max(int(own), self.ledger_code)

    def to_dict(self) -> dict[str, object]:
        return {
            "completions": self.completions,
            "parallelism": self.parallelism,
            "backoff_limit": self.backoff_limit,
            "done": self.done,
            "already_done": self.already_done,
            "empty": self.empty,
            "dead": [{"item": item, "reason": reason} for item, reason in self.dead],
            "failures": [{"item": item, "reason": reason} for item, reason in self.failures],
            "queued": self.queued,
            "dead_letters": self.dead_letters_after,
            "new_dead_letters": self.dead_letters_after - self.dead_letters_before,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "exit_code": int(self.exit_code),
        }
