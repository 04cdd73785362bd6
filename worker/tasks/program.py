"""A program run per item as the task: its input in a temporary file, its outputs in a directory.

The program is any command line (no shell), as amqp-consume would run it; the worker does the
queue and storage work around it. Exit 0 stores what it wrote; exit 3 says the item can never
succeed; any other exit, or running past the timeout, is a failure another try may not repeat.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from jobkit_worker.errors import (
    ConfigError,
    ExitCode,
    InputError,
    StoreUnavailable,
    TaskError,
    describe_exit_status,
)
from jobkit_worker.interruption import worker_interruption
from jobkit_worker.names import beside_item
from jobkit_worker.scratch import owner_prefix, remove_path, remove_stale
from jobkit_worker.settings import Settings, setting_names
from jobkit_worker.storage.base import Content
from jobkit_worker.tasks.contract import Task
from jobkit_worker.tasks.relay import Relay

log = logging.getLogger(__name__)

_RUNNING: set[int] = set()  # the process groups of the programs running now
# An item's input copy and its output directory, each in a directory of its own below this.
SCRATCH = Path(tempfile.gettempdir(), "jobkit-scratch")

REASON_LINES = 5  # the last lines of the program's standard error that make a failure's reason
_PLACEHOLDER = re.compile(r"\{(?:input|output_dir|item)\}")
_RELAY_WAIT_SECONDS = 5.0  # for a killed program's output (a child may hold it open)
_GROUP_POLL_SECONDS = 0.05  # how often the end of what a program left running is looked for
_CHUNK_BYTES = 1024 * 1024  # read at once from a program's output, and its pipes' size
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# Resolved now, not in the forked child, where only async-signal-safe work belongs.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
# util-linux's setpriv sets a program's parent-death signal and runs it: a third of the cost of
# a preexec_fn, which makes Python fork the whole worker instead of spawning; still, an exec
# more per item, as much again as a short program's own.
_SETPRIV = shutil.which("setpriv") if _LIBC is not None else None
_reaped = False  # whether the process this worker was forked from ends what a dead one leaves


def orphans_are_reaped() -> None:
    """Say that the process this worker was forked from kills the programs a worker leaves
    running when it dies (the local runner's template does): they then need no parent-death
    signal of their own."""
    global _reaped
    _reaped = True


def program_task(settings: Settings) -> Task:
    """The program of TASK_COMMAND as a task; ConfigError when it is not found."""
    words = shlex.split(settings.task_command)
    if shutil.which(words[0]) is None:
        raise ConfigError(
            f"TASK_COMMAND {settings.task_command!r}: no program {words[0]!r} found (PATH, or "
            "a path to an executable file)."
        )
    words = [_anchored(word) for word in words]
    environment = program_environment(os.environ)
    program = Program(
        words,
        settings.task_timeout_seconds,
        # Encoded once, not by every start: a worker's environment is tens of variables.
        {os.fsencode(name): os.fsencode(value) for name, value in environment.items()},
        settings.task_log_bytes,
        _launcher(shutil.which(words[0], path=environment.get("PATH")) or words[0]),
    )
    remove_stale(SCRATCH)  # what killed workers' programs left behind
    _adopt_orphans()
    worker_interruption.on_request(stop_programs)
    return program.run


def _adopt_orphans() -> None:
    """Become the parent of what a program leaves running when it exits (Linux's child
    subreaper): it is waited for here while this worker lives, and reaped when it ends. Else
    it would pass to whatever subreaper is above (the run's template, which kills a dead
    worker's leftovers) or to init."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _anchored(word: str) -> str:
    """`word` as an absolute path when it names a file or directory relative to where the
    worker started: the program runs in a working directory of its own."""
    if _PLACEHOLDER.search(word) or os.path.isabs(word) or not os.path.exists(word):
        return word
    return os.path.abspath(word)


def program_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What a program runs with: the worker's environment without the kit's settings (the
    broker's URL and password, the locations) and without any AZURE_* variable (keys and
    identities), so that a program can use no credential of the kit's."""
    kit = set(setting_names())
    return {
        name: value
        for name, value in environ.items()
        if name not in kit and not name.startswith("AZURE_")
    }


@dataclass(frozen=True)
class Launcher:
    """How a program is started so that it ends with the worker: `executable` run with the
    command line after `prefix`, and `before_exec` called in the child, if any."""

    executable: str
    prefix: tuple[str, ...] = ()
    before_exec: Callable[[], None] | None = None


def _launcher(found: str) -> Launcher:
    """Starting the program found at `found` so that a killed worker leaves it running nowhere.

    Nothing needs doing where something else ends it with the worker: a worker that is its PID
    namespace's init (a container's entry point, as the kit's image runs it), whose end ends
    every process of the namespace, or whose parent reaps what it leaves. Else Linux's
    parent-death signal, set by setpriv or, without it, before exec in a forked child.
    """
    if os.getpid() == 1 or _reaped or _LIBC is None:
        return Launcher(os.path.abspath(found))
    if _SETPRIV is not None:
        return Launcher(_SETPRIV, (_SETPRIV, "--pdeathsig", "KILL", "--"))
    return Launcher(os.path.abspath(found), before_exec=_die_with_the_worker)


@dataclass(frozen=True)
class Program:
    """A command line run per item, with how long it may run, its environment, how much of
    each of its output streams an item's log keeps, and how it is started."""

    words: list[str]
    timeout: float
    environment: dict[bytes, bytes]
    log_bytes: int
    launcher: Launcher

    @contextlib.contextmanager
    def run(self, item: str, data: bytes) -> Iterator[dict[str, Content]]:
        """Run the program on one item; yields the files it wrote to {output_dir}, each named
        for its place beside the item (`a/x.csv` writing `r.txt` gives `a/r.txt`), which are
        removed after the block.

        Raises InputError when it exits 3, TaskError on another non-zero exit or a timeout
        (then its whole process group is killed), with its last standard error lines as the
        reason.
        """
        command = " ".join(self.words)
        places = {"{item}": item}
        with _room(item), contextlib.ExitStack() as scratch:
            beside_input = None
            if "{input}" in command:
                # A directory of its own, so that the file keeps the item's own name.
                beside_input = Path(scratch.enter_context(_scratch_directory()))
                places["{input}"] = str(beside_input / PurePosixPath(item).name)
                Path(places["{input}"]).write_bytes(data)
            output_dir = None
            if "{output_dir}" in command:
                output_dir = Path(scratch.enter_context(_scratch_directory()))
                places["{output_dir}"] = str(output_dir)
            # Where it runs: with {output_dir}, there, and what it writes there is an output
            # too; else an empty directory of the worker's, the same for each item.
            workdir = output_dir or _workdir()
            try:
                self._run(item, places, workdir)
            finally:
                left = [] if output_dir else _emptied(workdir)  # empty for the next item
            _refuse_left(item, left)
            found = _outputs(item, output_dir, "{output_dir}") if output_dir else {}
            if beside_input is not None:  # what it wrote beside its input (gzip -k {input})
                made = _outputs(item, beside_input, "{input}'s directory")
                made.pop(PurePosixPath(item).name, None)
                _refuse_clashes(item, found, made)
                found.update(made)
            yield {beside_item(item, name): path for name, path in found.items()}

    def _run(self, item: str, places: dict[str, str], workdir: Path) -> None:
        """Run the command with `places` filled in, in `workdir`; raise what its end means."""
        argv = [_fill(word, places) for word in self.words]
        process = subprocess.Popen(
            [*self.launcher.prefix, *argv],
            executable=self.launcher.executable,
            stdin=subprocess.DEVNULL,
            env=self.environment,
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,  # so a timeout kills what the program started too
            preexec_fn=self.launcher.before_exec,
        )
        _RUNNING.add(process.pid)
        try:
            code, stderr = _wait(process, self.timeout, self.log_bytes)
        finally:
            _RUNNING.discard(process.pid)
        _check(self.words, item, self.timeout, code, stderr)


def _scratch_directory() -> tempfile.TemporaryDirectory[str]:
    """A new directory below SCRATCH, named for this process, removed after its block."""
    SCRATCH.mkdir(exist_ok=True)
    return tempfile.TemporaryDirectory(dir=SCRATCH, prefix=owner_prefix(SCRATCH))


@contextlib.contextmanager
def _room(item: str) -> Iterator[None]:
    """A full disk under the scratch directory is not the item's fault: it goes back to the
    queue without spending a delivery, until there is room again."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise StoreUnavailable(
            f"{item}: no room for its files in {SCRATCH} ({exc.strerror}); free space there "
            "or set TMPDIR to a roomier place."
        ) from exc


def _workdir() -> Path:
    """This process's empty working directory for programs that get no scratch directory."""
    path = SCRATCH / f"{owner_prefix(SCRATCH)}work"
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
    return path


def _emptied(workdir: Path) -> list[str]:
    """The names of what was in `workdir`, removed now (nothing, if it was removed itself)."""
    try:
        left = sorted(os.listdir(workdir))
    except FileNotFoundError:
        return []
    for name in left:
        remove_path(workdir / name)
    return left


def _refuse_left(item: str, left: list[str]) -> None:
    """InputError naming what the program `left` in its working directory, which is not kept."""
    if not left:
        return
    raise InputError(
        f"{item}: the program wrote {_some(left)} in its working directory, which is not kept; "
        "have it write its outputs to {output_dir}."
    )


def _check(
    words: list[str], item: str, timeout: float, code: int | None, stderr: list[str]
) -> None:
    """Raise what a program's end `code` means (None: killed at the timeout), with its last
    standard error lines as the reason; nothing for exit 0."""
    program = "'" + " ".join(words) + "'"  # as configured, placeholders unfilled
    last = " | ".join(line for line in stderr if line) or "no standard error output"
    if code is None:
        raise TaskError(
            f"{item}: {program} ran longer than TASK_TIMEOUT_SECONDS ({timeout:g} s) and was "
            f"killed; last standard error: {last}"
        )
    if code == ExitCode.DEAD:
        raise InputError(f"{item}: {program} exited 3: {last}")
    if code != 0:
        raise TaskError(f"{item}: {program} {describe_exit_status(code)}: {last}")


def _fill(word: str, places: dict[str, str]) -> str:
    # In one pass, so an item's own braces are never filled in; and not str.format, so that a
    # program's braces (awk '{print}') stay as written.
    return _PLACEHOLDER.sub(lambda match: places[match.group(0)], word)


def _wait(
    process: subprocess.Popen[bytes], timeout: float, log_bytes: int
) -> tuple[int | None, list[str]]:
    """Relay its output to the log until it ends, killing its group at the timeout; all in
    this thread (a thread for each stream and a timer took a third of a short program's time).

    A program that exits 0 is done once every process of its group has ended too (a child it
    left in the background may still be writing an output); after another exit, what it left
    is killed.
    """
    assert process.stdout is not None and process.stderr is not None
    stderr = Relay("stderr", log_bytes)  # its last lines make a failure's reason
    relays = {process.stdout.fileno(): Relay("stdout", log_bytes), process.stderr.fileno(): stderr}
    ended = _end_of(process)  # registered until the program has ended
    expired = False
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for descriptor in relays:
            _widen(descriptor)
            selector.register(descriptor, selectors.EVENT_READ)
        selector.register(ended, selectors.EVENT_READ)
        while selector.get_map() or _group_alive(process.pid):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if expired:
                    break  # killed, and its output still held open: no longer read
                expired = True
                _kill_group(process.pid)
                deadline = time.monotonic() + _RELAY_WAIT_SECONDS
                continue
            for key, _ in selector.select(min(remaining, _GROUP_POLL_SECONDS)):
                if key.fd == ended:
                    selector.unregister(ended)
                    if process.wait() != 0:  # nothing of it is stored: end what it left
                        _kill_group(process.pid)
                elif chunk := os.read(key.fd, _CHUNK_BYTES):
                    relays[key.fd].feed(chunk)
                else:
                    selector.unregister(key.fd)
    for relay in relays.values():
        relay.end()  # its last part, also where a child held it open
    os.close(ended)
    process.stdout.close()
    process.stderr.close()
    code = process.wait()
    return (None if expired else code), stderr.last_lines(REASON_LINES)


def _widen(pipe: int) -> None:
    """Let the pipe hold as much as Linux allows an unprivileged process (1 MiB by default):
    fewer turns between a chatty program and the relay."""
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, _CHUNK_BYTES)


def _group_alive(group: int) -> bool:
    """True while a process of the process group `group` has not ended. Called once its
    leader is waited for: what ended and was left to this process (a subreaper, or init) is
    reaped first, as a zombie still counts as a member of its group."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of the group changed its user: still there
        return True
    return True


def _end_of(process: subprocess.Popen[bytes]) -> int:
    """A descriptor that becomes readable when `process` ends: Linux's pidfd for it or, where
    there is none, a pipe that a thread waiting for it closes."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux 5.3 or later
        return os.pidfd_open(process.pid)
    readable, writable = os.pipe()

    def wait() -> None:
        process.wait()
        os.close(writable)

    threading.Thread(target=wait, name="jobkit-program-wait", daemon=True).start()
    return readable


def stop_programs() -> None:
    """Kill every running program with all it started (its process group): the worker was
    asked to stop, and gives the items back."""
    for group in list(_RUNNING):
        _kill_group(group)


def _kill_group(group: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def _die_with_the_worker() -> None:
    """In the program's process before exec: Linux kills it if the worker dies first, so a
    killed worker leaves no program running on (the item's next try runs it afresh)."""
    assert _LIBC is not None
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _some(names: list[str]) -> str:
    """The first five of `names`, and how many more."""
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _refuse_clashes(item: str, found: dict[str, Path], made: dict[str, Path]) -> None:
    """InputError naming the files the program wrote both in {output_dir} and beside its
    input: one would replace the other."""
    if clashes := sorted(found.keys() & made.keys()):
        raise InputError(
            f"{item}: the program wrote {_some(clashes)} both in {{output_dir}} and "
            "beside {input}; only one of the two can be stored under that name."
        )


def _outputs(item: str, directory: Path, place: str) -> dict[str, Path]:
    """Every file under `directory` (the program's `place`), by its path relative to it.

    TaskError when the directory is gone (the program or a cleaner of temporary files removed
    it: what it held is lost, and another try makes it again); InputError naming what a store
    cannot keep (a link, a FIFO, a socket, an empty directory) rather than leaving it.
    """
    if not directory.is_dir():
        raise TaskError(
            f"{item}: {place} ({directory}) was removed while the program ran, with whatever "
            "it held; have the program (or a cleaner of temporary files) leave it in place."
        )
    found, odd = {}, []
    for path in sorted(directory.rglob("*")):
        name = path.relative_to(directory).as_posix()
        if path.is_symlink():
            odd.append(f"{name} (a symbolic link)")
        elif path.is_dir():
            if not any(path.iterdir()):
                odd.append(f"{name} (an empty directory)")
        elif path.is_file():
            found[name] = path
        else:
            odd.append(f"{name} (not a regular file)")
    if odd:
        raise InputError(
            f"{item}: the program left {_some(odd)} in {place}, which no store keeps; have it "
            "write regular files only."
        )
    return found
