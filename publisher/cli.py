"""`jobkit`: publish work items, watch the queue and run the job."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from worker.errors import EXIT_CODE_HELP, ConfigError, InputError, JobkitError
from worker.settings import SETTINGS_HELP, Settings
from worker.storage import check_name, open_store

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help=(
        "Coarse-parallel batch work from a RabbitMQ work queue: publish one message per item, "
        "run one worker per item, ack only after the result is stored. "
        "Settings come from the environment; the worker's exit codes are the job's contract."
    ),
    epilog=SETTINGS_HELP + "\n\n" + EXIT_CODE_HELP,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@contextmanager
def _settings() -> Iterator[Settings]:
    """Settings from the environment; any kit error becomes a one-line message and its exit code."""
    try:
        settings = Settings.from_env(os.environ)
        logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("pika").setLevel(logging.CRITICAL)  # its failures are reported here
        yield settings
    except JobkitError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(int(exc.exit_code)) from None


def _print_json(data: object) -> None:
    out.print(json.dumps(data, indent=2), markup=False)


@app.command()
def publish(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Items to publish; default: every *.csv under INPUT_URL."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Publish one persistent message per item and wait until the broker confirms each.

    Example: jobkit publish temperature1.csv temperature2.csv
    """
    from publisher.publish import publish_items
    from publisher.status import read_depth, read_inputs

    with _settings() as settings:
        items = list(names or []) or read_inputs(settings)
        if not items:
            raise ConfigError(
                f"No *.csv files under INPUT_URL {settings.input_url!r}; make samples with "
                "'jobkit data' or set INPUT_URL."
            )
        for name in items:
            try:
                check_name(name)
            except InputError as exc:
                raise ConfigError(f"Not published: {exc}") from None
        confirmed = publish_items(settings, items)
        depth = read_depth(settings)
    if as_json:
        _print_json({"queue": settings.queue, "confirmed": confirmed, "depth": depth})
    else:
        out.print(
            f"Published {confirmed} items to {settings.queue!r}, each confirmed by the broker; "
            f"{depth} ready in the queue.",
            markup=False,
        )


@app.command()
def depth() -> None:
    """Print how many items are ready in the work queue (not counting those being worked on).

    Example: jobkit depth
    """
    from publisher.status import read_depth

    with _settings() as settings:
        out.print(read_depth(settings))


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Show the queue's depth, every dead letter with its reason, and the outputs written.

    Example: jobkit status --json
    """
    from publisher.display import print_status
    from publisher.status import read_status

    with _settings() as settings:
        snapshot = read_status(settings)
    if as_json:
        _print_json(
            {
                "queue": snapshot.queue,
                "ready": snapshot.ready,
                "dead_letters": [vars(letter) for letter in snapshot.dead_letters],
                "outputs": snapshot.outputs,
            }
        )
    else:
        print_status(out, snapshot, settings.output_url)


@app.command()
def purge(
    dead: Annotated[
        bool, typer.Option("--dead", help="Purge the dead-letter queue instead.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
) -> None:
    """Delete every message waiting in the work queue (or, with --dead, the dead-letter queue).

    Example: jobkit purge --yes
    """
    from publisher.publish import purge_queue

    with _settings() as settings:
        queue = settings.dead_queue if dead else settings.queue
        if not yes:
            typer.confirm(f"Delete every message in {queue!r}?", abort=True)
        purged = purge_queue(settings, queue)
    out.print(f"Purged {purged} messages from {queue!r}.", markup=False)


@app.command()
def data(
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Directory to write to; default: INPUT_URL.")
    ] = None,
    files: Annotated[int, typer.Option(min=1, help="How many files.")] = 6,
    rows: Annotated[int, typer.Option(min=0, help="Readings per file, one a minute.")] = 525_600,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same bytes.")] = 0,
) -> None:
    """Write sample inputs temperature1.csv … temperatureN.csv: one-minute readings from
    2017-12-01 (a year by default), with a few gaps and missing values.

    Example: jobkit data --files 6 --rows 10080 --out data/input
    """
    from publisher.samples import write_samples

    with _settings() as settings:
        store = open_store(str(out_dir) if out_dir else settings.input_url)
        names = write_samples(store, files, rows, seed)
    out.print(f"Wrote {len(names)} files of {rows:,} readings to {store}.", markup=False)


@app.command()
def run(
    parallelism: Annotated[
        int, typer.Option(min=1, help="Workers at once; default: the number of CPUs.")
    ] = os.cpu_count() or 1,
    completions: Annotated[
        int | None,
        typer.Option(min=0, help="Successful workers needed; default: the queue depth at start."),
    ] = None,
    backoff_limit: Annotated[
        int,
        typer.Option(min=0, help="Failed workers (exit 1, crash) tolerated; exit 3 not counted."),
    ] = 6,
    log_file: Annotated[Path, typer.Option(help="Where the workers' logs go.")] = Path(
        ".jobkit/run.log"
    ),
    drain: Annotated[
        bool,
        typer.Option(
            "--drain",
            help="Each worker takes items until the queue is empty (for short items, where "
            "starting a process per item costs more than the item).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run the job locally: worker processes, as a Kubernetes Job runs pods, until the queue is
    empty; then report. Exits 3 if an item was dead-lettered, 1 at the backoff limit.

    Example: jobkit run --parallelism 3
    """
    from publisher.display import job_progress, print_report
    from publisher.runner import LocalRunner

    with _settings() as settings:
        runner = LocalRunner(settings, parallelism, completions, backoff_limit, log_file, drain)
        with job_progress(out, enabled=not as_json) as on_progress:
            report = runner.run(on_progress)
    if as_json:
        _print_json(report.to_dict())
    else:
        print_report(out, report, settings.queue, settings.output_url, str(log_file))
    raise typer.Exit(int(report.exit_code))
