"""`jobkit` commands that show a batch: the HTML report and one result's plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from jobkit_publisher.cli.terminal import load_settings, out
from jobkit_publisher.run.record import DEFAULT_RUN_DIR, REPORT_NAME, run_record_name
from jobkit_worker.errors import ConfigError, InputError
from jobkit_worker.settings import Settings


def report(
    out_path: Annotated[
        Path, typer.Option("--out", help="Where to write the HTML page.")
    ] = DEFAULT_RUN_DIR / REPORT_NAME,
    run_path: Annotated[
        Path | None,
        typer.Option(
            "--run",
            help="The run record 'jobkit run' wrote beside its log; default: "
            f"{DEFAULT_RUN_DIR}/last-run-QUEUE.json.",
        ),
    ] = None,
) -> None:
    """Write the batch report, one self-contained HTML page: the last run's timeline (one bar
    per attempt on its worker), the outcome (done, dead-lettered with reasons, retried, still
    queued, wall time, rate), the hourly curves of the results, and the versions and settings.
    Reads the run record, the success records, the dead letters (left in place) and the queue.

    Example: jobkit report --out report.html
    """
    with load_settings() as settings:
        run = run_path or DEFAULT_RUN_DIR / run_record_name(settings.queue)
        write_report(settings, run, out_path, out)


def plot(
    result: Annotated[Path, typer.Argument(help="A result: Datetime,mean,std,max,min.")],
    out_path: Annotated[
        Path | None, typer.Option("--out", help="The PNG to write; default: beside RESULT.")
    ] = None,
) -> None:
    """Draw one result's hourly mean with its min-max band as a PNG; hours without readings
    are gaps.

    Example: jobkit plot data/output/temperature1_aggregated.csv --out temperature1.png
    """
    from jobkit_publisher.report.charts import curve_png
    from jobkit_publisher.report.curves import read_curve

    target = out_path or result.with_suffix(".png")
    with load_settings():
        try:
            curve = read_curve(result.name, result.read_bytes())
        except (OSError, InputError) as exc:
            detail = f"{exc.strerror}." if isinstance(exc, OSError) else str(exc)
            raise ConfigError(f"Cannot plot {result}: {detail}") from None
        _write_file(target, curve_png(curve))
    out.print(f"Wrote {target}", markup=False, highlight=False)


def _write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path`, making its directory; ConfigError when that fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"Cannot write {path} ({exc.strerror}).") from None


def write_report(settings: Settings, run_path: Path, out_path: Path, console: Console) -> None:
    """Gather the batch's facts, write the report page, and say where it is."""
    from jobkit_publisher.report.batch import read_batch, summarize
    from jobkit_publisher.report.html import render_report

    batch = read_batch(settings, run_path)
    summary = summarize(batch)
    _write_file(out_path, render_report(batch, summary).encode("utf-8", "backslashreplace"))
    console.print(
        f"Wrote the report to {out_path}: {summary.done} done, {summary.dead} dead-lettered, "
        f"{summary.retried} retried, {summary.queued} still queued.",
        markup=False,
        highlight=False,
    )
