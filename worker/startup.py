"""Process-wide settings for a short-lived worker, made before the task's imports, and a quick
end for short-lived processes."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import sys
from typing import NoReturn

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value, kept fixed


def prepare_process() -> None:
    """Keep the worker's memory close to what it uses, and its CPU time to what it needs."""
    # The task never multiplies matrices: OpenBLAS's threads, started when numpy is imported,
    # would only cost each worker a tenth of a CPU-second.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _release_freed_memory_promptly()


def _release_freed_memory_promptly() -> None:
    """Make glibc hand large freed blocks straight back to the system.

    By default it raises its mmap threshold after the first large free and keeps later
    buffers on per-thread heaps: a year's file then peaks at 5 times its size, not 3.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: its own defaults apply
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def stop_now(exit_code: int) -> NoReturn:
    """End the process with `exit_code` once its output, logs and exit handlers are done,
    skipping the interpreter's teardown of every module (numpy, pyarrow, pika, rich), which
    costs a short-lived process a tenth of a second."""
    global _exit_status
    _exit_status = exit_code
    sys.exit(exit_code)


def _end_before_teardown() -> None:
    """Exit handlers run last-registered first, so this one, registered as the kit starts, runs
    after those of the modules imported later (multiprocessing's, which remove what they made);
    then nothing is left for the teardown to do that matters."""
    if _exit_status is None:  # an exit not through stop_now: the interpreter's usual end
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a closed pipe, a full disk: nothing more to say
            stream.flush()
    logging.shutdown()  # logging's own handler was registered before this one
    os._exit(_exit_status)


_exit_status: int | None = None
atexit.register(_end_before_teardown)
