"""The local runner: worker processes started the way a Kubernetes Job starts pods."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from publisher.runrecord import Attempt
from publisher.spawn import WorkerProcess, WorkerSpawner
from worker.broker import connect, declare_queue, queue_depth
from worker.errors import ExitCode, failure_action
from worker.settings import Settings
from worker.storage import open_store

POLL_SECONDS = 0.02  # a finished worker is replaced within this; a poll costs ~1 ms
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0


@dataclass
class JobReport:
    """What a run did: the counts a Job's status would show, plus the items and reasons."""

    completions: int
    parallelism: int
    backoff_limit: int
    done: list[str] = field(default_factory=list)
    empty: int = 0  # workers that found the queue empty: successes without an item
    dead: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (item or "", reason)
    running: int = 0
    queued: int = 0
    dead_letters_before: int = 0
    dead_letters_after: int = 0
    seconds: float = 0.0
    stopped: str = ""  # why the run stopped early, empty when it ran to the end
    started_at: float = 0.0  # Unix time
    attempts: list[Attempt] = field(default_factory=list)  # one per worker outcome, in order

    @property
    def succeeded(self) -> int:
        return len(self.done) + self.empty

    @property
    def exit_code(self) -> ExitCode:
        """CONFIG after a configuration error, RETRY at the backoff limit, DEAD for dead letters."""
        if self.stopped.startswith("configuration"):
            return ExitCode.CONFIG
        if self.stopped:
            return ExitCode.RETRY
        if self.dead or self.dead_letters_after > self.dead_letters_before:
            return ExitCode.DEAD
        return ExitCode.DONE

    def to_dict(self) -> dict[str, object]:
        return {
            "completions": self.completions,
            "parallelism": self.parallelism,
            "backoff_limit": self.backoff_limit,
            "done": self.done,
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


@dataclass
class _Worker:
    process: WorkerProcess  # its outcome lines: one JSON line per item, read as they grow
    lane: int  # its worker slot: a free one of 0 .. parallelism - 1
    spawned: float  # Unix time
    read_to: int = 0
    codes: list[int] = field(default_factory=list)  # the codes of the lines read so far


class LocalRunner:
    """Run `python -m worker` processes: at most `parallelism` at once, until the job is done.

    Like a Job: the job needs `completions` successful items; failures (exit 1, crashes) count
    against `backoff_limit` and are retried after a growing delay; exit 3 is ignored (a
    podFailurePolicy Ignore rule); exit 2 fails the job. Unlike a Job, it also keeps going
    until the queue is empty and no worker holds an item. With `drain`, each worker takes
    items until the queue is empty instead of one.
    """

    def __init__(
        self,
        settings: Settings,
        parallelism: int,
        completions: int | None,
        backoff_limit: int,
        log_path: Path,
        drain: bool = False,
    ) -> None:
        self.settings = settings
        self.drain = drain
        self.parallelism = parallelism
        self.requested_completions = completions
        self.backoff_limit = backoff_limit
        self.log_path = log_path
        self._workers: list[_Worker] = []
        self._spawner = WorkerSpawner()
        self._not_before = 0.0

    def run(self, on_progress: Callable[[JobReport], None] = lambda report: None) -> JobReport:
        """Run the job to its end and return the report.

        Makes the output directory or container first; raises ConfigError or BrokerUnavailable
        before any worker starts.
        """
        started, started_at = time.monotonic(), time.time()
        open_store(self.settings.output_url, self.settings, create=True).check()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        watch = _QueueWatch(self.settings)
        try:
            depth = watch.declare()
            completions = (
                depth if self.requested_completions is None else self.requested_completions
            )
            report = JobReport(
                completions, self.parallelism, self.backoff_limit, queued=depth,
                started_at=started_at,
            )  # fmt: skip
            report.dead_letters_before = watch.depth(self.settings.dead_queue)
            try:
                self._loop(report, lambda: watch.depth(self.settings.queue), on_progress)
            finally:
                self._stop_workers()
            report.queued = watch.depth(self.settings.queue)
            report.running = 0
            on_progress(report)
            report.dead_letters_after = watch.depth(self.settings.dead_queue)
        finally:
            watch.close()
        report.seconds = time.monotonic() - started
        return report

    def _loop(
        self,
        report: JobReport,
        read_depth: Callable[[], int],
        on_progress: Callable[[JobReport], None],
    ) -> None:
        while True:
            self._reap(report)
            if not report.stopped and len(report.failures) > self.backoff_limit:
                report.stopped = f"backoff limit reached ({len(report.failures)} failed workers)"
            if report.stopped:
                if not self._workers:
                    return
            else:
                report.queued = read_depth()
                wanted = max(report.completions - report.succeeded, report.queued)
                if not self._workers and wanted <= 0:
                    return
                while (
                    len(self._workers) < min(self.parallelism, wanted)
                    and time.monotonic() >= self._not_before
                ):
                    self._start_worker()
            report.running = len(self._workers)
            on_progress(report)
            time.sleep(POLL_SECONDS)

    def _start_worker(self) -> None:
        env = {
            **os.environ,
            "BROKER_URL": self.settings.broker_url,
            "QUEUE": self.settings.queue,
            "INPUT_URL": self.settings.input_url,
            "OUTPUT_URL": self.settings.output_url,
            "LOG_LEVEL": self.settings.log_level,
            "MAX_INPUT_BYTES": str(self.settings.max_input_bytes),
            **self.settings.task_env(),  # empty values replace what this process inherited
        }
        spawned = time.time()
        process = self._spawner.start(env, ["--drain"] if self.drain else [], self.log_path)
        lane = min(set(range(self.parallelism)) - {worker.lane for worker in self._workers})
        self._workers.append(_Worker(process, lane, spawned))

    def _reap(self, report: JobReport) -> None:
        for worker in list(self._workers):
            exited = worker.process.poll() is not None
            for result in _new_json_lines(worker):  # after poll(): an exited worker's last lines
                worker.codes.append(int(str(result.get("code", -1))))
                self._record(report, result)
                report.attempts.append(_attempt(worker, result))
            if exited:
                self._workers.remove(worker)
                worker.process.close()
                self._record_exit(report, worker)

    def _record(self, report: JobReport, result: dict[str, object]) -> None:
        code = int(str(result.get("code", -1)))
        item = str(result.get("item") or "")
        reason = str(result.get("reason") or "")
        if code == ExitCode.DONE:
            if item:
                report.done.append(item)
            else:
                report.empty += 1
        elif failure_action(code) == "Ignore":
            report.dead.append((item, reason))
        elif failure_action(code) == "FailJob":
            report.stopped = f"configuration error: {reason}"
        else:
            self._record_failure(report, item, reason)

    def _record_exit(self, report: JobReport, worker: _Worker) -> None:
        """A worker that died without saying why (killed, crashed) is a failure."""
        code = worker.process.poll()
        if code is None or code == ExitCode.DONE or code in worker.codes:
            return
        outcome = "config" if code == ExitCode.CONFIG else "retry"
        report.attempts.append(
            Attempt(worker.lane, worker.spawned, time.time(), outcome, reason=_describe_exit(code))
        )
        if code == ExitCode.CONFIG:
            report.stopped = f"configuration error: {_describe_exit(code)}"
        else:
            self._record_failure(report, "", _describe_exit(code))

    def _record_failure(self, report: JobReport, item: str, reason: str) -> None:
        report.failures.append((item, reason))
        delay = BACKOFF_FIRST_SECONDS * 2 ** (len(report.failures) - 1)
        self._not_before = time.monotonic() + min(delay, BACKOFF_MAX_SECONDS)

    def _stop_workers(self) -> None:
        """Stop workers still running (on an interrupt): their items go back to the queue."""
        for worker in self._workers:
            worker.process.terminate()
        for worker in self._workers:
            worker.process.stop(grace_seconds=10)
        self._workers.clear()


def _new_json_lines(worker: _Worker) -> list[dict[str, object]]:
    """The complete JSON lines the worker printed since the last call."""
    worker.process.output.seek(worker.read_to)
    text = worker.process.output.read()
    complete = text[: text.rfind(b"\n") + 1]
    worker.read_to += len(complete)
    return json_lines(complete)


class _QueueWatch:
    """Reads queue depths over one connection, reconnecting when the broker restarts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._connection: BlockingConnection | None = None
        self._open_channel: BlockingChannel | None = None

    def declare(self) -> int:
        """Declare the job's queues; returns the work queue's depth."""
        return self._with_channel(lambda channel: declare_queue(channel, self.settings.queue))

    def depth(self, queue: str) -> int:
        return self._with_channel(lambda channel: queue_depth(channel, queue))

    def _with_channel(self, read: Callable[[BlockingChannel], int]) -> int:
        try:
            return read(self._channel())
        except pika.exceptions.AMQPError:
            self.close()  # the broker went away: connect again (connect retries) and read once more
            return read(self._channel())

    def _channel(self) -> BlockingChannel:
        if self._open_channel is None or not self._open_channel.is_open:
            self.close()
            self._connection = connect(self.settings, "runner")
            self._open_channel = self._connection.channel()
        return self._open_channel

    def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            self._connection.close()
        self._connection = self._open_channel = None


def _attempt(worker: _Worker, result: dict[str, object]) -> Attempt:
    """The attempt a worker's outcome line describes: it ends `seconds` after the take."""
    took, phases = result.get("took_at"), result.get("phases")
    took_at = float(took) if isinstance(took, int | float) else None
    seconds = float(str(result.get("seconds") or 0))
    return Attempt(
        lane=worker.lane,
        spawned=worker.spawned,
        finished=time.time() if took_at is None else took_at + seconds,
        outcome=str(result.get("outcome", "")),
        item=str(result.get("item") or ""),
        reason=str(result.get("reason") or ""),
        took=took_at,
        phases={str(k): float(v) for k, v in phases.items()} if isinstance(phases, dict) else {},
    )


def json_lines(output: bytes) -> list[dict[str, object]]:
    """The lines of `output` that are JSON objects (workers' outcomes), in order."""
    results = []
    for line in output.decode(errors="replace").splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            results.append(parsed)
    return results


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"worker killed by {signal.Signals(-code).name}"
    return f"worker exited with code {code}"
