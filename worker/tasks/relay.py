"""A program's output streams, relayed to the log in blocks and bounded per item.

A line at a time, a worker logs about 6,000 lines a second: a chatty program then blocks on a
full pipe and can be killed at its timeout for the kit's slowness. Blocks keep the relay at
pipe speed, and the bound keeps one item from filling the log: its first and last parts, and
a line saying how much was left out between them.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_RECENT_BYTES = 4096  # kept of the stream's end whatever the bound, for a failure's reason


class Relay:
    """One stream of a program: the first half of `limit` bytes logged as they come, the last
    half when it ends, and between them only counted."""

    def __init__(self, name: str, limit: int) -> None:
        self._name = name
        self._head_left = limit - limit // 2
        self._tail_bytes = limit // 2
        self._partial = b""  # the head's unfinished last line
        self._tail = bytearray()  # past the head: what may still be the stream's last part
        self._left_out = 0  # bytes dropped from the tail's front
        self._left_out_lines = 0
        self._recent = bytearray()
        self._logs = log.isEnabledFor(logging.INFO)

    def feed(self, chunk: bytes) -> None:
        """Take the next `chunk` of the stream."""
        self._recent += chunk
        del self._recent[:-_RECENT_BYTES]
        if self._head_left > 0:
            head, chunk = chunk[: self._head_left], chunk[self._head_left :]
            self._head_left -= len(head)
            lines, newline, self._partial = (self._partial + head).rpartition(b"\n")
            if newline:
                self._emit(lines)
            if self._head_left > 0:
                return
            chunk, self._partial = self._partial + chunk, b""
        self._tail += chunk
        if len(self._tail) > 2 * self._tail_bytes:  # trimmed now and then, not every chunk
            self._drop(len(self._tail) - self._tail_bytes)

    def end(self) -> None:
        """The stream ended: log its unfinished line, what was left out, and its last part."""
        if self._partial:
            self._emit(self._partial)
        if len(self._tail) > self._tail_bytes:
            self._drop(len(self._tail) - self._tail_bytes)
        if self._left_out and b"\n" in self._tail:  # begin the last part at a line's start
            self._drop(self._tail.index(b"\n") + 1)
        if self._left_out and self._logs:
            log.info(
                "program %s: ... %d bytes (%d lines) left out of the log ...",
                self._name,
                self._left_out,
                self._left_out_lines,
            )
        if self._tail:
            self._emit(bytes(self._tail.removesuffix(b"\n")))
        self._tail.clear()

    def last_lines(self, count: int) -> list[str]:
        """The stream's last `count` non-empty lines, each with its whitespace squeezed."""
        text = self._recent.decode("utf-8", errors="replace")
        lines = [" ".join(line.split()) for line in text.splitlines()]
        return [line for line in lines if line][-count:]

    def _drop(self, size: int) -> None:
        self._left_out += size
        self._left_out_lines += self._tail.count(b"\n", 0, size)
        del self._tail[:size]

    def _emit(self, lines: bytes) -> None:
        """Log `lines` as one record, each line marked with its stream."""
        if not self._logs:
            return
        prefix = f"\nprogram {self._name}: "
        text = lines.decode("utf-8", errors="replace").replace("\r\n", "\n")
        log.info("program %s: %s", self._name, text.replace("\n", prefix))
