"""What every `jobkit` command shares: the consoles, reading the settings, JSON output."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from worker.errors import JobkitError
from worker.settings import Settings, with_task

# Item names, reasons and paths are data: no markup ('[bold]') and no emoji codes (':x:') are
# read in anything printed, tables included.
out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


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


def print_json(data: object) -> None:
    """`data` as JSON on stdout, exactly: written past rich, which would take its text for
    markup to render (and spend seconds on a large document)."""
    out.file.write(json.dumps(data, indent=2) + "\n")
    out.file.flush()
