"""The local runner: worker processes started the way a Kubernetes Job starts pods."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

from jobkit_publisher.run.outcome import Attempt, JobReport, describe_worker_exit
from jobkit_publisher.run.spawn import WorkerProcess, WorkerSpawner
from jobkit_worker.broker import Session, dead_queue_name
from jobkit_worker.errors import BrokerLost, ConfigError, ExitCode, JobkitError
from jobkit_worker.interruption import Interruption
from jobkit_worker.outcome import Outcome, Verdict, read_end, read_notice
from jobkit_worker.ownership import claim_location
from jobkit_worker.settings import Settings, setting_names
from jobkit_worker.storage.base import open_store
from jobkit_worker.tasks import load_task

STOP_GRACE_SECONDS = 10.0  # for stopped workers to give their items back, before SIGKILL
# A worker that ends is replaced at once; a draining worker's progress is read this often.
PROGRESS_SECONDS = 0.1
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
# Past this size the workers' log is moved to <name>.1, the one before it dropped, as a worker
# starts: a batch keeps at most about twice this of logs however long it runs.
LOG_ROTATE_BYTES = 64 * 1024 * 1024


@dataclass
class _Worker:
    process: WorkerProcess  # its outcome lines: one JSON line per item, read as they grow
    lane: int  # its worker slot: a free one of 0 .. parallelism - 1
    spawned: float  # Unix time
    read_to: int = 0
    codes: list[int] = field(default_factory=list)  # the codes of the lines read so far
    ended: bool = False  # it printed its end line: it ended of itself, having said everything


class LocalRunner:
    """Run `jobkit-worker` processes: at most `parallelism` at once, until the job is done.

    Like a Job: the job needs `completions` successful items; failures (exit 1, crashes) count
    against `backoff_limit` and are retried after a growing delay; exit 3 is ignored (a
    podFailurePolicy Ignore rule); exit 2 fails the job. Unlike a Job, a dead-lettered item
    counts as a completion, as a done one does, and it keeps going until the queue is empty
    and no worker holds an item. With `drain`, each worker takes items until the queue is
    empty instead of one.
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
        load_task(settings)  # a task that cannot load is exit 2, whatever the queue holds
        self.settings = settings
        self.drain = drain
        self.parallelism = parallelism
        self.requested_completions = completions
        self.backoff_limit = backoff_limit
        self.log_path = log_path
        self._workers: list[_Worker] = []
        # A process per item: the next worker, started and connected while the slots are full,
        # waiting to take its item the moment one frees.
        self._ahead: WorkerProcess | None = None
        self._spawner = WorkerSpawner(parallelism)
        self._not_before = 0.0
        self.given_back: list[str] = []  # items stopped workers gave back to the queue
        self.killed = 0  # stopped workers killed after the grace: whether they held one, unknown
        self.report: JobReport | None = None  # what the run did so far, once it began
        self._clock = RunClock()  # started again as the run starts

    def run(self, on_progress: Callable[[JobReport], None] = lambda report: None) -> JobReport:
        """Run the job to its end and return the report.

        Makes the output directory or container first; raises ConfigError or
        BrokerUnavailable before any worker starts. On SIGINT or SIGTERM, stops the workers,
        which give their items back (`given_back` names them), and raises Interrupted.
        """
        with Interruption().installed():  # Ctrl-C and SIGTERM raise Interrupted in here
            return self._run(on_progress)

    def _run(self, on_progress: Callable[[JobReport], None]) -> JobReport:
        self._clock = RunClock()
        outputs = open_store(self.settings.output_url, self.settings, create=True)
        outputs.check(writable=True)
        claim_location(outputs, self.settings.queue)
        _check_log(self.log_path)
        watch = _QueueWatch(self.settings)
        try:
            depth = watch.declare()
            completions = (
                depth if self.requested_completions is None else self.requested_completions
            )
            report = JobReport(
                completions, self.parallelism, self.backoff_limit, queued=depth,
                started_at=self._clock.started_at,
            )  # fmt: skip
            dead_queue = dead_queue_name(self.settings.queue)
            report.dead_letters_before = report.dead_letters_after = watch.depth(dead_queue)
            self.report = report
            try:
                self._loop(report, lambda: watch.depth(self.settings.queue), on_progress)
                report.queued = watch.depth(self.settings.queue)
                report.dead_letters_after = watch.depth(dead_queue)
            except JobkitError as exc:  # the broker or the store cut the run short
                report.stop(exc.exit_code, f"cut short: {exc}")
            finally:
                self._stop_workers(report)
                outputs.check()  # removes what killed workers left half-written
                report.seconds = self._clock.elapsed()
            report.running = 0
            on_progress(report)
        finally:
            watch.close()
        return report

    def _loop(
        self,
        report: JobReport,
        read_depth: Callable[[], int],
        on_progress: Callable[[JobReport], None],
    ) -> None:
        while True:
            self._reap(report)
            if len(report.failures) > self.backoff_limit:
                report.stop(
                    ExitCode.RETRY, f"backoff limit reached ({len(report.failures)} failed workers)"
                )
            if report.stopped:
                if not self._workers:
                    return
            else:
                report.queued = read_depth()
                wanted = max(report.completions - report.completed, report.queued)
                if self.requested_completions is None and report.empty and not report.queued:
                    # A worker found the queue empty: the rest was done elsewhere (another run,
                    # a worker of its own), or dead-lettered.
                    wanted = 0
                if self.drain and self._workers:
                    # Running workers take whatever is queued; what they hold unreported needs
                    # no new worker, which would find the queue empty.
                    wanted = report.queued
                if not self._workers and wanted <= 0:
                    return
                while (
                    len(self._busy()) < min(self.parallelism, wanted)
                    and time.monotonic() >= self._not_before
                ):
                    self._start_worker()
                if not self.drain and self._ahead is None and report.queued > 0:
                    self._ahead = self._spawn()
            report.running = len(self._busy())
            on_progress(report)
            self._wait_for_news()

    def _wait_for_news(self) -> None:
        """Until a worker ends, the backoff delay passes or it is time to show progress."""
        timeout = PROGRESS_SECONDS
        if self._not_before > time.monotonic():
            timeout = min(timeout, self._not_before - time.monotonic())
        sentinels: list[int | Connection] = [worker.process.sentinel for worker in self._workers]
        sentinels += [worker.process.turn for worker in self._busy() if worker.process.turn]
        if sentinels:
            wait(sentinels, timeout)
        else:
            time.sleep(timeout)

    def _busy(self) -> list[_Worker]:
        """The workers in a slot: each holds an item, or is about to take one; one that
        reported its item's outcome holds none while it exits (a draining one may)."""
        return [worker for worker in self._workers if self.drain or not worker.codes]

    def _start_worker(self) -> None:
        """Fill a slot: with the worker started ahead, if there is one, else a new one."""
        process, self._ahead = self._ahead or self._spawn(), None
        process.take_turn()
        lane = min(set(range(self.parallelism)) - {worker.lane for worker in self._busy()})
        self._workers.append(_Worker(process, lane, self._clock.now()))

    def _spawn(self) -> WorkerProcess:
        """A new worker; one per item gets a turn to wait for, and says when it settled."""
        # Workers see exactly the runner's settings, whatever this process inherited.
        names = set(setting_names())
        inherited = {name: value for name, value in os.environ.items() if name not in names}
        env = {**inherited, **self.settings.to_env()}
        rotate_log(self.log_path)
        argv = ["--drain"] if self.drain else []
        return self._spawner.start(env, argv, self.log_path, turn=not self.drain)

    def _reap(self, report: JobReport) -> None:
        for worker in list(self._workers):
            exited = worker.process.poll() is not None
            for line in _new_lines(worker):  # after poll(): an exited worker's last lines
                notice = read_notice(line)
                if notice is not None:
                    report.notices.append(notice)
                worker.ended = worker.ended or read_end(line) is not None
                outcome = Outcome.from_json(line)
                if outcome is None:
                    continue
                worker.codes.append(int(outcome.code))
                if not self.drain:
                    worker.process.dismiss()  # its one item settled: its turn is over
                self._count(report, outcome.verdict, outcome.item or "", outcome.reason)
                took = outcome.took_at
                if outcome.took_monotonic is not None:  # this host's: no clock step moves it
                    took = self._clock.at(outcome.took_monotonic)
                report.attempts.append(
                    Attempt.of(outcome, worker.lane, worker.spawned, self._clock.now(), took)
                )
            if exited:
                self._workers.remove(worker)
                worker.process.close()
                self._count_silent_exit(report, worker)

    def _count(self, report: JobReport, verdict: Verdict, item: str, reason: str) -> None:
        report.count(verdict, item, reason)
        if verdict is Verdict.RETRY:
            delay = BACKOFF_FIRST_SECONDS * 2 ** (len(report.failures) - 1)
            self._not_before = time.monotonic() + min(delay, BACKOFF_MAX_SECONDS)

    def _count_silent_exit(self, report: JobReport, worker: _Worker) -> None:
        """A worker that ended without saying so (killed, crashed, or its task ended the
        process) is a failure: whatever item it held goes back to the queue."""
        code = worker.process.poll()
        if code is None or worker.ended:
            return
        reason = describe_worker_exit(code)
        if code == ExitCode.DONE:
            reason += (
                " before it reported its end: the task ended the process itself (os._exit?), "
                "so the item it held was not stored and goes back to the queue"
            )
        verdict = Verdict.CONFIG if code == ExitCode.CONFIG else Verdict.RETRY
        report.attempts.append(
            Attempt(worker.lane, worker.spawned, self._clock.now(), verdict, reason=reason)
        )
        self._count(report, verdict, "", reason)

    def _stop_workers(self, report: JobReport) -> None:
        """Stop the workers still running (on an interrupt): each gives its item back. The
        worker started ahead, holding none, ends without a word."""
        if self._ahead is not None:
            self._ahead.dismiss()
            self._ahead.terminate()
            self._ahead.stop(STOP_GRACE_SECONDS)
            self._ahead = None
        attempts = len(report.attempts)
        for worker in self._workers:
            worker.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for worker in self._workers:
            worker.process.join(max(deadline - time.monotonic(), 0.0))
        for worker in self._workers:
            if worker.process.poll() is None:
                self.killed += 1
            worker.process.kill()  # past the grace; its item goes back when its connection does
            worker.process.join(None)
        self._reap(report)
        self.given_back = [
            attempt.item
            for attempt in report.attempts[attempts:]
            if attempt.item and attempt.outcome is Verdict.RETRY
        ]


class RunClock:
    """Unix times within one run, counted on the monotonic clock from its start: a clock step
    during the run (an NTP correction, a resumed laptop) moves none of them."""

    def __init__(self) -> None:
        self.started_at = time.time()
        self._started = time.monotonic()

    def now(self) -> float:
        return self.at(time.monotonic())

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self._started

    def at(self, monotonic: float) -> float:
        """The time `monotonic` (this host's monotonic clock) stands for."""
        return self.started_at + (monotonic - self._started)


def _check_log(path: Path) -> None:
    """Make the log's directory and check that the log can be written; ConfigError if not."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.open("ab").close()
    except OSError as exc:
        raise ConfigError(
            f"Cannot write the workers' log {path} ({exc.strerror or exc}); run from a directory "
            "you can write to, or give --log-file a place that is."
        ) from exc


def rotate_log(path: Path) -> None:
    """Move the log at `path` to `path`.1 once it is over LOG_ROTATE_BYTES: workers started
    from now on write a new one (a draining worker goes on in the old one until it ends)."""
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))


def _new_lines(worker: _Worker) -> list[str]:
    """The whole lines the worker printed since the last call: outcomes and notices."""
    worker.process.output.seek(worker.read_to)
    text = worker.process.output.read()
    complete = text[: text.rfind(b"\n") + 1]
    worker.read_to += len(complete)
    return complete.decode(errors="replace").splitlines()


class _QueueWatch:
    """Reads queue depths over one session, opening another when the broker restarts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session: Session | None = None

    def declare(self) -> int:
        """Declare the job's queues; returns the work queue's depth."""
        return self._with_session(lambda session: session.declare(self.settings.queue))

    def depth(self, queue: str) -> int:
        return self._with_session(lambda session: session.depth(queue))

    def _with_session(self, read: Callable[[Session], int]) -> int:
        try:
            return read(self._open())
        except BrokerLost:
            self.close()  # the broker went away: connect again (which retries) and read again
            return read(self._open())

    def _open(self) -> Session:
        if self._session is None:
            self._session = Session(self.settings, "runner")
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        self._session = None
