"""`jobkit`: publish work items, watch the queue, run the job and report on it."""

import sys
from importlib.metadata import version
from typing import Annotated, NoReturn

import typer

from jobkit_publisher.cli.exits import COMMAND_EXIT_HELP
from jobkit_publisher.cli.job import data, manifests, run, upload
from jobkit_publisher.cli.queue import dead_app, depth, publish, purge, status
from jobkit_publisher.cli.report import plot, report
from jobkit_worker.settings import settings_help
from jobkit_worker.startup import stop_now

app = typer.Typer(
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion: bash, zsh, fish, powershell
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help=(
        "Coarse-parallel batch work from a RabbitMQ work queue: publish one message per item, "
        "run one worker per item, ack only after the result is stored. "
        "Settings come from the environment."
    ),
    # "\b" keeps click from rewrapping the paragraph after it: these are tables.
    epilog=f"\b\n{settings_help()}\n\n\b\n{COMMAND_EXIT_HELP}",
)


def _print_version(asked: bool) -> None:
    if asked:
        print(f"jobkit {version('amqp-jobkit')}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    pass


for command in (publish, depth, status, purge, data, upload, manifests, run, report, plot):
    app.command()(command)
app.add_typer(dead_app, name="dead")


def main() -> NoReturn:
    """The `jobkit` command: the app, then a quick end (see jobkit_worker.startup.stop_now)."""
    try:
        app()
    except KeyboardInterrupt:  # before a command began
        _say_interrupted()
    except SystemExit as exc:
        if _interrupted_unhandled(exc):
            _say_interrupted()
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        stop_now(exc.code if isinstance(exc.code, int) else int(exc.code is not None))
    stop_now(0)


def _interrupted_unhandled(ended: SystemExit) -> bool:
    """Whether a Ctrl-C that no command handled ended it: typer turns the KeyboardInterrupt
    into an exit (130) raised from it, which click ends the process with."""
    return isinstance(getattr(ended.__context__, "__cause__", None), KeyboardInterrupt)


def _say_interrupted() -> NoReturn:
    """A command without a clean stop of its own has nothing to undo: say so, and exit 130."""
    print("Interrupted.", file=sys.stderr)
    stop_now(130)
