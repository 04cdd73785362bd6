"""Worker processes for the local runner, forked from a template process that has imported
the worker once: still a fresh process per item, without a fresh interpreter's start-up.

Starting Python and importing pika, numpy and pyarrow costs a worker about 0.25 CPU-seconds,
most of a one-year file's whole time. multiprocessing's fork server does those imports once;
each worker is then a fork of it with its own memory, connection, message and exit code.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import select
import signal
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO

from jobkit_worker.errors import ConfigError
from jobkit_worker.scratch import owner_prefix, remove_stale

# What every worker imports before its first item: the fork server imports these once.
PRELOAD = [
    "jobkit_publisher.run.template",  # first: the template then outlives a signal to its group
    "jobkit_worker.__main__",
    "jobkit_worker.consumer",
    "jobkit_worker.tasks",
    "jobkit_worker.tasks.program",  # told, in each worker, that the template reaps its programs
    "jobkit_worker.builtin.aggregate",
    "jobkit_worker.storage.local",  # the default store, chosen by scheme when settings are read
    "encodings.idna",  # the codec a connection encodes the broker's host name with
]
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_APPEND
_START_GIVE_UP_SECONDS = 30.0  # a worker's start outlives losses of its template for this long
_START_PAUSE_SECONDS = (0.1, 2.0)  # the pause after a loss: the first, doubling up to the last
# Measured: a run of N workers needs 16 + 3 N descriptors (its own, and per worker a sentinel, an
# outcome file and the template's share); one more per worker to spare.
_OPEN_FILES_OWN = 16
_OPEN_FILES_PER_WORKER = 4
OUTCOME_FD = 3  # where a worker prints its outcome lines: not its stdout, which a task shares
OUTCOMES = Path(tempfile.gettempdir(), "jobkit-outcomes")  # a file per worker, while it runs


class WorkerProcess:
    """One worker run in a process of its own; its outcome lines are read from `output`. One
    started with a `turn` waits, connected, for `take_turn` (or `dismiss`), and then says on
    it when it has printed an outcome: its item is settled, though the process has not ended."""

    def __init__(
        self,
        process: multiprocessing.process.BaseProcess,
        output_path: Path,
        turn: Connection | None = None,
    ) -> None:
        self._process = process
        self._output_path = output_path
        self.turn = turn  # the runner's end of the pipe it waits on and says it settled on
        self.output: IO[bytes] = output_path.open("rb")

    def take_turn(self) -> None:
        """Let a worker started with a turn take its item now."""
        if self.turn is not None:
            with contextlib.suppress(OSError):  # it ended already: its reason is in its output
                os.write(self.turn.fileno(), b"\n")

    def dismiss(self) -> None:
        """Close the turn: one that has not taken it ends without taking anything."""
        if self.turn is not None:
            self.turn.close()
            self.turn = None

    @property
    def sentinel(self) -> int:
        """A descriptor that becomes ready when the process ends, for `wait`."""
        return self._process.sentinel

    def poll(self) -> int | None:
        """Its exit code (negative: the signal that killed it), or None while it runs."""
        return self._process.exitcode

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM): it gives back the item it holds, then ends."""
        self._process.terminate()

    def kill(self) -> None:
        """End it at once (SIGKILL), if it has not ended."""
        if self._process.exitcode is None:
            self._process.kill()

    def join(self, timeout: float | None) -> None:
        """Wait for it to end, at most `timeout` seconds (None: for ever)."""
        self._process.join(timeout)

    def stop(self, grace_seconds: float) -> None:
        """Wait for it to end, killing it after `grace_seconds`; then drop its output file."""
        self.join(grace_seconds)
        self.kill()
        self.join(None)
        self.close()

    def close(self) -> None:
        self.dismiss()
        self.output.close()
        self._output_path.unlink(missing_ok=True)


class WorkerSpawner:
    """Starts `jobkit-worker` runs as forks of one template process (a fork server)."""

    def __init__(self, parallelism: int) -> None:
        _allow_open_files(parallelism)
        self._context = start_template()
        remove_stale(OUTCOMES)  # what a killed runner left

    def start(
        self, env: dict[str, str], argv: list[str], log_path: Path, turn: bool = False
    ) -> WorkerProcess:
        """Start one worker with environment `env` and arguments `argv`; its logs go to
        `log_path`, its outcome lines to a file of its own. One with a `turn` connects and
        waits for it (WorkerProcess.take_turn) before it takes an item."""
        # A file, not a pipe: a draining worker prints a line per item, more than a pipe holds.
        OUTCOMES.mkdir(exist_ok=True)
        descriptor, output = tempfile.mkstemp(dir=OUTCOMES, prefix=owner_prefix(OUTCOMES))
        os.close(descriptor)
        give_up_at = time.monotonic() + _START_GIVE_UP_SECONDS
        pause, longest = _START_PAUSE_SECONDS
        while True:
            waits, told = self._context.Pipe() if turn else (None, None)
            process = self._context.Process(
                target=_run_worker,
                args=(os.getpid(), env, argv, output, str(log_path), waits),
                name="jobkit-worker",
            )
            try:
                process.start()
                if waits is not None:
                    waits.close()  # the worker's end, sent to it
                return WorkerProcess(process, Path(output), told)
            except (EOFError, OSError) as exc:
                # The template died (an OOM kill, say) while starting this worker: the next
                # start runs another template, as a fresh one would start.
                for end in (waits, told):
                    if end is not None:
                        end.close()
                if time.monotonic() + pause > give_up_at:
                    raise ConfigError(
                        "cannot start a worker process: its template failed for "
                        f"{_START_GIVE_UP_SECONDS:g} s (last: {exc!r}); see the messages above."
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, longest)


def _allow_open_files(parallelism: int) -> None:
    """Raise this process's limit of open files to what `parallelism` workers need, within its
    hard limit; ConfigError when the hard limit is lower."""
    needed = _OPEN_FILES_OWN + _OPEN_FILES_PER_WORKER * parallelism
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ConfigError(
            f"the limit of open files ('ulimit -n') is {hard}, and a run with parallelism "
            f"{parallelism} needs {needed}: raise the limit, or lower --parallelism."
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def start_template() -> multiprocessing.context.ForkServerContext:
    """Start the template process, if it is not running, and return its context.

    Started early, it does its imports while the runner starts, connects and sets up its display.
    """
    # Set before the fork server starts, so numpy's import there starts no BLAS threads.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # A worker keeps the heap it freed for its next allocations instead of giving it back to
    # the system and faulting it in again: ~5,000 page faults an item, 20 % of a drain's time.
    os.environ.setdefault("GLIBC_TUNABLES", "glibc.malloc.top_pad=67108864")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD + _main_script_imports())
    multiprocessing.forkserver.ensure_running()
    return context


def _main_script_imports() -> list[str]:
    """What the starting script imported, when it was started by path (`jobkit`, `pytest`).

    multiprocessing re-runs such a script in every new process, for what it defines; with its
    imports preloaded that is a lookup, not ~50 ms of importing typer and rich per worker.
    """
    main = sys.modules["__main__"]
    if getattr(getattr(main, "__spec__", None), "name", None) is not None:
        return []  # started with -m: multiprocessing does not re-run it
    modules = {getattr(value, "__module__", None) for value in vars(main).values()}
    return sorted(name for name in modules if isinstance(name, str) and name != "__main__")


def _run_worker(
    runner: int,
    env: dict[str, str],
    argv: list[str],
    output: str,
    log: str,
    turn: Connection | None,
) -> None:
    """In the forked process: become `jobkit-worker ARGV` with `env`, then exit with its code.

    It stops (SIGTERM to itself: it gives back what it holds) when the runner process ends,
    however that ended: no worker goes on taking items that no runner counts.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the template ignores it; a worker does not
    _end_with(runner)
    os.environ.clear()
    os.environ.update(env)
    # Outcomes on a descriptor of their own: what the task prints goes to the log with the rest.
    for path, flags, standard in (
        (os.devnull, os.O_RDONLY, 0),
        (log, _WRITE, 1),
        (log, _WRITE, 2),
        (output, _WRITE, OUTCOME_FD),
    ):
        descriptor = os.open(path, flags, 0o644)
        os.dup2(descriptor, standard, inheritable=standard != OUTCOME_FD)
        os.close(descriptor)
    from jobkit_worker.__main__ import main
    from jobkit_worker.startup import stop_now
    from jobkit_worker.tasks.program import orphans_are_reaped

    template = sys.modules.get("jobkit_publisher.run.template")  # the fork server's first import
    if template is not None and template.REAPS:
        orphans_are_reaped()
    waits = [] if turn is None else ["--turn-fd", str(turn.fileno())]
    stop_now(main([*argv, *waits, "--outcome-fd", str(OUTCOME_FD)]))


def _end_with(runner: int) -> None:
    """Send this process SIGTERM when process `runner` ends (at once if it has): a thread
    waits on a descriptor of the runner's that Linux makes readable when it ends."""
    try:
        descriptor = os.pidfd_open(runner)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGTERM)
        return
    except (AttributeError, OSError):  # not Linux 5.3 or later: the runner's own stop must do
        return

    def wait() -> None:
        select.select([descriptor], [], [])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, name="jobkit-runner-watch", daemon=True).start()
