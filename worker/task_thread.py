"""The thread a worker runs its tasks in while its main thread answers the broker: one for the
process's life, so that a draining worker does not start a thread for every item (starting
one cost a short item a tenth of its time)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class Running:
    """A task handed to the thread: `done` is set when it has returned or raised `error`."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class TaskThread:
    """Runs what it is given, one call at a time, in one daemon thread started on first use: a
    function that cannot be stopped does not keep the process from ending."""

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[tuple[Callable[[], None], Running]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self, work: Callable[[], None]) -> Running:
        """Run `work` after what was given before; returns at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="jobkit-task", daemon=True)
            self._thread.start()
        running = Running()
        self._work.put((work, running))
        return running

    def _serve(self) -> None:
        while True:
            work, running = self._work.get()
            try:
                work()
            except BaseException as exc:  # handed to the caller, which decides the item's fate
                running.error = exc
            finally:
                running.done.set()
