"""Imported first by the workers' template process (multiprocessing's fork server), for three
effects: it ignores the signals that stop a run, it imports nothing from the working directory,
and it ends what a killed worker's program leaves running.

A signal to the whole process group (`timeout`, a CI runner, a container stop, a closed
terminal) reaches the runner, the template and the workers at once. Were the template to end,
every worker would look finished to the runner at once, whatever it still held; ignoring it,
the template leaves the runner to stop the workers and count what they gave back. It ends
when the runner does (multiprocessing's fork server ends when its parent's end of a pipe
closes), and each worker with it (see jobkit_publisher.run.spawn). The runner never imports
this module itself.

The fork server starts as `python -c`, which puts the working directory first on the import
path, where a user's `worker.py` or `pika.py` would take the place of what the workers import.
Like `python -P`, the template takes it off again; a task's own modules come from PYTHONPATH
or an installed distribution, as for `jobkit-worker`.

A worker runs each program in a process group of its own. The template is a child subreaper:
the programs of a worker that dies (SIGKILL, out of memory) become its children, and a thread
kills each such group within REAP_SECONDS. So a program needs no parent-death signal of its
own, which costs an exec per item. What a program of a living worker leaves in the background
never reaches the template: the worker is a subreaper too, and waits for it.
"""

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
import warnings

from jobkit_worker.interruption import HANG_UP, SIGNALS

REAP_SECONDS = 0.25
_PR_SET_CHILD_SUBREAPER = 36


def _reaps() -> bool:
    """Become a child subreaper, if Linux lists this process's children to find them by."""
    if sys.platform != "linux" or not os.path.exists(f"/proc/self/task/{os.getpid()}/children"):
        return False
    return bool(ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1) == 0)


def _orphaned_groups() -> set[int]:
    """The process groups of this process's children that are not its own: a worker is in the
    template's group, the programs it leaves when it dies are not."""
    own, groups = os.getpgrp(), set()
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/children") as children:
            for child in children.read().split():
                with contextlib.suppress(ProcessLookupError):
                    groups.add(os.getpgid(int(child)))
    groups.discard(own)
    return groups


def _reap() -> None:
    while True:
        time.sleep(REAP_SECONDS)
        for group in _orphaned_groups():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


# SIGINT too, though the fork server ignores it itself. Workers inherit the hang-up's, and the
# programs they run: the others' each worker handles as it starts.
for _signum in (*SIGNALS, HANG_UP):
    signal.signal(_signum, signal.SIG_IGN)
sys.path[:] = [entry for entry in sys.path if entry != ""]
REAPS = _reaps()
if REAPS:
    # The fork server waits for its every child; those it did not start, it warns of.
    warnings.filterwarnings("ignore", "forkserver: waitpid returned unexpected pid")
    threading.Thread(target=_reap, name="jobkit-reaper", daemon=True).start()
