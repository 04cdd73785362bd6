"""The signals a terminal, ssh or a supervisor sends. Each that would end the process (SIGINT,
SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM) stops it in order: an exception where nothing is
at stake, and only a request while a process holds a message, so that it can give the message
back before it ends. A hang-up (SIGHUP: a closed terminal or ssh session) is ignored, as under
`nohup`, by the process and the programs it runs."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
)
HANG_UP = signal.SIGHUP


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop by a signal (Ctrl-C, SIGTERM from a supervisor, ...)."""

    def __init__(self, signum: int) -> None:
        super().__init__(_name(signum))
        self.signum = signum

    @property
    def signal_name(self) -> str:
        return _name(self.signum)

    @property
    def exit_status(self) -> int:
        """128 plus the signal's number, as a shell reports a process the signal ended."""
        return 128 + self.signum


class Interruption:
    """Turns the first stopping signal into Interrupted, or, while put off, into a request
    that the code holding a message checks (`requested`). Later signals are ignored: the first
    one's clean stop is under way."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._deferred = False
        self._on_request: list[Callable[[], None]] = []

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def signal_name(self) -> str:
        return _name(self.signum) if self.signum is not None else ""

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Handle the signals within the block; the handlers before it are restored after.
        Only a process's main thread may handle signals: in any other, the block runs under
        the program's own handlers."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self._handle) for signum in SIGNALS}
        previous[HANG_UP] = signal.signal(HANG_UP, signal.SIG_IGN)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def on_request(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the first signal arrives (to stop a program the task runs)."""
        self._on_request.append(callback)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Within the block (blocks may nest) a signal only sets `requested`; the block checks
        it and ends."""
        outer, self._deferred = self._deferred, True
        try:
            yield
        finally:
            self._deferred = outer

    def stop_tasks(self) -> None:
        """Call what `on_request` registered, without a signal: the item was taken away."""
        for callback in self._on_request:
            callback()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        self.stop_tasks()
        if not self._deferred:
            raise Interrupted(signum)


def _name(signum: int) -> str:
    return signal.Signals(signum).name


worker_interruption = Interruption()
"""The worker process's: installed by its entry point, checked while a message is held."""
