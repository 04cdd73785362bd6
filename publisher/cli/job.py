"""`jobkit` commands that prepare and run the job: data, upload, manifests, run."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from jobkit_publisher.cli.exits import status_exit
from jobkit_publisher.cli.options import (
    CommandOption,
    JobFlags,
    JsonOption,
    NoInputOption,
    ParallelismOption,
    TaskOption,
    completions_or_depth,
    job_options,
    with_job_flags,
)
from jobkit_publisher.cli.report import write_report
from jobkit_publisher.cli.terminal import (
    display_failure,
    err,
    how_to_run,
    load_settings,
    out,
    print_json,
)
from jobkit_publisher.kube.manifests import JobOptions
from jobkit_publisher.kube.objects import Manifest
from jobkit_publisher.run.record import DEFAULT_RUN_DIR, REPORT_NAME, run_record_name
from jobkit_worker.errors import ConfigError, JobkitError
from jobkit_worker.interruption import Interrupted
from jobkit_worker.settings import Settings
from jobkit_worker.storage.base import open_store

if TYPE_CHECKING:
    from jobkit_publisher.queue.published import Published
    from jobkit_publisher.queue.reconcile import Reconciliation
    from jobkit_publisher.run.outcome import JobReport


def data(
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Directory to write to; default: INPUT_URL.")
    ] = None,
    files: Annotated[int, typer.Option(min=1, help="How many files.")] = 6,
    rows: Annotated[
        int,
        typer.Option(min=1, help="Readings per file, one a minute; at most MAX_SPAN_HOURS' worth."),
    ] = 525_600,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same bytes.")] = 0,
) -> None:
    """Write sample inputs temperature1.csv … temperatureN.csv: one-minute readings from
    2017-12-01 (a year by default), with a few gaps and missing values.

    Example: jobkit data --files 6 --rows 10080 --out data/input
    """
    from jobkit_publisher.data.samples import write_samples

    with load_settings() as settings:
        hours = -(-rows // 60)
        if hours > settings.max_span_hours:
            raise ConfigError(
                f"--rows {rows:,} would span {hours:,} hours, more than MAX_SPAN_HOURS "
                f"({settings.max_span_hours:,}) lets the aggregation take; give at most "
                f"{settings.max_span_hours * 60:,} rows, or raise MAX_SPAN_HOURS."
            )
        store = open_store(str(out_dir) if out_dir else settings.input_url, settings, create=True)
        store.check()
        names = write_samples(store, files, rows, seed)
    out.print(f"Wrote {len(names)} files of {rows:,} readings to {store}.", markup=False)


def upload(
    source: Annotated[Path, typer.Argument(help="Local directory holding the files.")],
    destination: Annotated[
        str, typer.Argument(help="Where to: az://container/prefix or a directory.")
    ],
    suffix: Annotated[str, typer.Option(help="Upload the files whose names end so.")] = ".csv",
) -> None:
    """Upload the files under SOURCE to DESTINATION (made if missing), skipping those already
    there with the same content.

    Example: jobkit upload data/input az://temperaturefiles
    """
    from rich.progress import Progress

    from jobkit_publisher.data.upload import upload_files

    with load_settings() as settings:
        settings.check_location("DESTINATION", destination)
        origin = open_store(str(source), settings)
        origin.check()
        names = origin.list(suffix)
        target = open_store(destination, settings, create=True)
        target.check(writable=True)
        with Progress(console=out, transient=True) as progress:
            bar = progress.add_task("upload", total=len(names))
            uploaded, skipped = upload_files(
                origin, target, names, lambda name, fresh: progress.advance(bar)
            )
    out.print(f"Uploaded {uploaded} files to {target}; {skipped} were already there.", markup=False)


@with_job_flags
def manifests(
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Write rabbitmq.yaml, secret.yaml, job.yaml here; else print."),
    ] = None,
    parallelism: ParallelismOption = 3,
    keda: Annotated[
        bool,
        typer.Option(
            help="A KEDA ScaledJob (one Job per queued item) instead, for queues that keep filling."
        ),
    ] = False,
    azure_credentials: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="An azure_credentials.json ({storage_account, account_key}): put in the Secret, "
            "mounted read-only, and named by AZURE_CREDENTIALS_PATH.",
        ),
    ] = None,
    example: Annotated[
        bool,
        typer.Option(
            help="Placeholders instead of secrets, which Kubernetes refuses: for documentation."
        ),
    ] = False,
    task: TaskOption = None,
    command: CommandOption = None,
    no_input: NoInputOption = False,
    *,
    job: JobFlags,
) -> None:
    """Render the Kubernetes manifests: RabbitMQ (one node, or a cluster with
    --broker-replicas 3), the Secret with a fresh random password, the data claim, and the
    Job with completions = the queue depth now and a podFailurePolicy from the worker's exit
    codes. Every pod meets Pod Security "restricted" (unless --data-host-path).

    Example: jobkit manifests --broker-replicas 3 --out k8s
    """
    from jobkit_publisher.kube.manifests import EXAMPLE_HEADER, render_files
    from jobkit_publisher.kube.objects import HEADER, write_manifests

    fixed = 1 if keda else parallelism if job.drain else None
    with load_settings(task, command, no_input) as settings:
        count = completions_or_depth(settings, job.completions, fixed)
        options = job_options(settings, job, parallelism, count)
        credentials = azure_credentials.read_bytes() if azure_credentials else None
        files = render_files(
            options, job.cluster_broker_url, credentials, keda, example, bool(job.existing_secret)
        )
        header = EXAMPLE_HEADER if example else HEADER
        if out_dir is None:
            out.print(_joined(files, header), markup=False, end="")
            return
        for path in write_manifests(out_dir, files, header):
            out.print(f"Wrote {path}", markup=False, highlight=False)


@with_job_flags
def run(
    parallelism: Annotated[
        int,
        typer.Option(
            "--parallelism", "-p", min=1, help="Workers at once; default: the number of CPUs."
        ),
    ] = os.cpu_count() or 1,
    log_file: Annotated[
        Path, typer.Option(help="Where the workers' logs go; the run record is kept beside it.")
    ] = DEFAULT_RUN_DIR / "run.log",
    as_json: JsonOption = False,
    with_report: Annotated[
        bool,
        typer.Option(
            "--report",
            help="Then write the batch report (see 'jobkit report') beside the log file.",
        ),
    ] = False,
    kube: Annotated[
        bool,
        typer.Option(
            help="Run on the current kubectl context: apply the manifests, follow the Job."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option(help="With --kube: print what would be applied (secrets masked).")
    ] = False,
    task: TaskOption = None,
    command: CommandOption = None,
    no_input: NoInputOption = False,
    *,
    job: JobFlags,
) -> None:
    """Run the job locally: worker processes, as a Kubernetes Job runs pods, until the queue is
    empty; then report. With --kube, apply the manifests to the current kubectl context and
    follow the Job instead. Exits 3 if an item was dead-lettered, 1 at the backoff limit.

    Example: jobkit run --parallelism 3
    """
    from jobkit_publisher.run.local import LocalRunner

    # A closed terminal hangs up the run and its workers: they go on to the end, as under nohup,
    # and what can no longer be shown is said in the run record.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with load_settings(task, command, no_input) as settings:
        if with_report:  # checked before the work, not after it
            from jobkit_publisher.report.charts import require_matplotlib

            require_matplotlib()
        if kube:
            from jobkit_publisher.kube.manifests import render_files

            fixed = parallelism if job.drain else None
            count = completions_or_depth(settings, job.completions, fixed)
            options = job_options(settings, job, parallelism, count)
            files = render_files(
                options, job.cluster_broker_url, existing_secret=bool(job.existing_secret)
            )
            report = _run_kube(settings, options, files, as_json, dry_run)
            outputs = f"{options.output_url} (in the pods)"
            logs = f"kubectl logs -l job-name={options.name}"
        else:
            runner = LocalRunner(
                settings, parallelism, job.completions, job.backoff_limit, log_file, job.drain
            )
            from jobkit_publisher.cli.display import (
                job_progress,  # while the runner's workers warm up
            )

            try:
                with job_progress(out, enabled=not as_json) as on_progress:
                    report = runner.run(on_progress)
            except Interrupted as exc:
                _say_interrupted(exc, runner.given_back, runner.killed)
                if runner.report is not None:  # what it did before, for 'jobkit report'
                    runner.report.stop(exc.exit_status, f"interrupted by {exc.signal_name}")
                    published = _published_now(settings)
                    _keep_run(
                        settings, runner.report, job.drain, log_file, False, as_json, published
                    )
                raise typer.Exit(exc.exit_status) from None
            outputs, logs = settings.output_url, str(log_file)
        try:
            published = _finish(settings, report, as_json, outputs, logs)
            _keep_run(settings, report, job.drain, log_file, with_report, as_json, published)
        except KeyboardInterrupt:
            err.print(
                "Interrupted after the work ended, so its summary, run record or report may be "
                f"missing: '{how_to_run('status', 'status')}' shows where each item is, and "
                f"'{how_to_run('report')}' writes the report.",
                markup=False,
            )
            raise typer.Exit(130) from None
    raise typer.Exit(int(report.exit_code))


def _say_interrupted(interrupted: Interrupted, given_back: list[str], killed: int) -> None:
    """One line: what the interrupt stopped, what is uncertain, and that running again
    finishes the work."""
    from jobkit_publisher.queue.reconcile import some_names
    from jobkit_publisher.run.local import STOP_GRACE_SECONDS

    if given_back:
        held = f"{some_names(given_back)} went back to the queue, without spending a delivery"
    elif not killed:
        held = "no worker held an item, so nothing went back to the queue"
    else:
        held = "no worker said it gave an item back"
    uncertain = ""
    if killed:
        workers = f"{killed} worker{'' if killed == 1 else 's'}"
        uncertain = (
            f" {workers} did not stop within {STOP_GRACE_SECONDS:g} s and had to be killed: "
            "whatever they held goes back to the queue when the broker sees them go, and an "
            "item they were giving back may be queued twice (a worker acks a copy of an item "
            "already done without doing it again)."
        )
    err.print(
        f"Interrupted by {interrupted.signal_name}: the workers stopped; {held}.{uncertain} "
        f"Run '{how_to_run('run', make_target='run')}' again to finish the work.",
        markup=False,
        highlight=False,
    )


def _keep_run(
    settings: Settings,
    report: JobReport,
    drain: bool,
    log_file: Path,
    with_report: bool,
    as_json: bool,
    published: Published | None,
) -> None:
    """Record the run, of the batch `published`, beside the log file; with `with_report`,
    write the batch report there (saying where on stderr when stdout is JSON)."""
    from jobkit_publisher.run.record import record_run, save_run

    run_path = log_file.with_name(run_record_name(settings.queue))
    try:
        save_run(run_path, record_run(report, settings, drain, published))
    except OSError as exc:
        err.print(f"error: cannot write the run record {run_path} ({exc.strerror or exc}).")
        return
    failure = display_failure()
    if failure:
        err.print(f"warning: {failure}; the run went on to its end, recorded in {run_path}.")
    if with_report:
        try:
            write_report(
                settings, run_path, log_file.with_name(REPORT_NAME), err if as_json else out
            )
        except JobkitError as exc:
            err.print(f"warning: the report cannot be written: {exc}", markup=False)


def _run_kube(
    settings: Settings,
    options: JobOptions,
    files: dict[str, list[Manifest]],
    as_json: bool,
    dry_run: bool,
) -> JobReport:
    """`run --kube`: apply the manifests and follow the Job, or print them with --dry-run."""
    from jobkit_publisher.cli.display import job_progress
    from jobkit_publisher.kube.manifests import mask_secrets
    from jobkit_publisher.kube.runner import KubeRunner

    if dry_run:
        out.print(_joined(mask_secrets(files)), markup=False, end="")
        raise typer.Exit(0)
    runner = KubeRunner(settings, options, [doc for docs in files.values() for doc in docs])
    try:
        with job_progress(out, enabled=not as_json) as on_progress:
            return runner.run(on_progress)
    except KeyboardInterrupt:
        err.print(
            f"Interrupted: Job {options.name!r} goes on in the cluster; 'kubectl get job "
            f"{options.name}' follows it, 'kubectl delete job {options.name}' stops it (its "
            "items go back to the queue).",
            markup=False,
        )
        raise typer.Exit(130) from None


def _published_now(settings: Settings) -> Published | None:
    """The publish record, for a run stopped before its reconciliation read it; None when it
    cannot be read (the run record then says not which batch)."""
    from jobkit_publisher.queue.published import read_published

    try:
        return read_published(open_store(settings.output_url, settings), settings.queue)
    except JobkitError:
        return None


def _finish(
    settings: Settings, report: JobReport, as_json: bool, outputs: str, logs: str
) -> Published | None:
    """Reconcile what was published with where it is now, and print the report; returns the
    publish record it read (None when there is none or it could not be read).

    Called once none of the run's workers holds an item: any held now are another's.
    """
    from jobkit_publisher.cli.display import print_report
    from jobkit_publisher.queue.status import read_status

    published = None
    try:
        status = read_status(settings)
        reconciliation: Reconciliation | None = status.reconciliation
        published = status.published
    except JobkitError as exc:  # the work is over: what cannot be read now is said, not failed
        reconciliation = None
        err.print(
            f"warning: the batch cannot be reconciled ({exc}); the run's own count is all there "
            "is.",
            markup=False,
        )
    if reconciliation is not None:
        report.ledger_code = status_exit(reconciliation)
    if as_json:
        checked = None if reconciliation is None else reconciliation.to_dict()
        print_json({**report.to_dict(), "reconciliation": checked})
        return published
    print_report(out, report, settings.queue, outputs, logs)
    if reconciliation is not None:
        style = None if reconciliation.adds_up else "bold yellow"
        out.print(reconciliation.summary(), style=style, markup=False, highlight=False)
    return published


def _joined(files: dict[str, list[Manifest]], header: str | None = None) -> str:
    from jobkit_publisher.kube.objects import HEADER, dump

    return dump([doc for docs in files.values() for doc in docs], header or HEADER)
