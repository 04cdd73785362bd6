"""What every `jobkit` command shares: the consoles, reading the settings, JSON output."""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

from jobkit_worker.errors import JobkitError
from jobkit_worker.settings import Settings, with_task

JSON_SCHEMA = 1  # the "schema" of every --json document; a change that breaks a reader bumps it


class Display:
    """sys.stdout or sys.stderr (whichever it is now), whose failures end what is shown, not
    the command: a reader that closed the pipe, a full disk, a terminal hung up. The work goes
    on; `failure` says what went wrong, for a line on the other stream at the end."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.failure: OSError | None = None

    @property
    def _stream(self) -> Any:
        return getattr(sys, self._name)

    def write(self, text: str) -> int:
        if self.failure is None:
            try:
                return int(self._stream.write(text))
            except OSError as exc:
                self.failure = exc
        return len(text)

    def flush(self) -> None:
        if self.failure is None:
            try:
                self._stream.flush()
            except OSError as exc:
                self.failure = exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _console(name: str) -> Console:
    # Item names, reasons and paths are data: no markup ('[bold]') and no emoji codes (':x:')
    # are read in anything printed, tables included.
    display: Any = Display(name)  # all of a text file rich uses
    return Console(file=display, highlight=False, soft_wrap=True, markup=False, emoji=False)


out = _console("stdout")
err = _console("stderr")


def display_failure() -> str:
    """What went wrong with showing this command's output on stdout, or empty."""
    failure = out.file.failure  # type: ignore[attr-defined]
    return "" if failure is None else f"stdout failed ({failure.strerror or failure})"


@contextmanager
def load_settings(
    task: str | None = None, command: str | None = None, no_input: bool = False
) -> Iterator[Settings]:
    """Settings from the environment, with the task the command line chose; any kit error
    becomes a one-line message and its exit code."""
    try:
        settings = Settings.from_env(with_task(os.environ, task, command, no_input))
        logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("pika").setLevel(logging.CRITICAL)  # its failures are reported here
        yield settings
    except JobkitError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(int(exc.exit_code)) from None


def how_to_run(words: str, make_target: str | None = None) -> str:
    """`jobkit WORDS` as the user can type it where they stand: the make target that does it
    when make started this command; `jobkit` when that is this program on PATH; else the path
    this program was started by (a virtualenv's, not on PATH)."""
    if make_target and "MAKELEVEL" in os.environ:
        return f"make {make_target}"
    program = sys.argv[0]
    found = shutil.which("jobkit")
    if found and os.path.realpath(found) == os.path.realpath(program):
        return f"jobkit {words}"
    relative = os.path.relpath(program)
    shown = relative if not relative.startswith("..") else os.path.abspath(program)
    return f"{shlex.quote(shown if os.sep in shown else './' + shown)} {words}"


def print_json(data: dict[str, object]) -> None:
    """`data` as JSON on stdout, exactly, under the version of its schema: written past rich,
    which would take its text for markup to render (and spend seconds on a large document)."""
    out.file.write(json.dumps({"schema": JSON_SCHEMA, **data}, indent=2) + "\n")
    out.file.flush()
