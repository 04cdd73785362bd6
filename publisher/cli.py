"""`jobkit`: publish work items, watch the queue and run the job."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from publisher.manifests import (
    DEFAULT_CLUSTER_BROKER_URL,
    DEFAULT_IMAGE,
    JobOptions,
    Manifest,
)
from publisher.runrecord import RUN_RECORD_NAME
from worker.errors import EXIT_CODE_HELP, ConfigError, ExitCode, InputError, JobkitError
from worker.settings import SETTINGS_HELP, Settings, with_task
from worker.storage import check_name, open_store

if TYPE_CHECKING:
    from publisher.runner import JobReport

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
DEFAULT_RUN_DIR = Path(".jobkit")  # the local runner's log, run record and report
REPORT_NAME = "report.html"
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
DrainOption = Annotated[
    bool,
    typer.Option(
        "--drain",
        help="Each worker (pod) takes items until the queue is empty: for short items, where "
        "starting a process per item costs more than the item.",
    ),
]
ParallelismOption = Annotated[int, typer.Option(min=1, help="Workers (pods) at once.")]
CompletionsOption = Annotated[
    int | None,
    typer.Option(min=0, help="Successful workers needed; default: the queue depth right now."),
]
BackoffOption = Annotated[
    int, typer.Option(min=0, help="Failed workers (exit 1, crash) tolerated; exit 3 not counted.")
]
NameOption = Annotated[str, typer.Option(help="Name of the Job.")]
ImageOption = Annotated[str, typer.Option(help="The worker image.")]
PullPolicyOption = Annotated[str, typer.Option(help="Always, IfNotPresent or Never.")]
TtlOption = Annotated[
    int, typer.Option(min=0, help="Delete the finished Job after this many seconds.")
]
DeadlineOption = Annotated[
    int | None, typer.Option(min=1, help="Stop the Job after this many seconds (activeDeadline).")
]
RequestsOption = Annotated[str, typer.Option(help="Each pod's CPU,memory requests.")]
LimitsOption = Annotated[str, typer.Option(help="Each pod's CPU,memory limits.")]
HostPathOption = Annotated[
    str | None,
    typer.Option(help="Node directory mounted at /data (kind: /data)."),
]
ClaimOption = Annotated[
    str | None,
    typer.Option(help="PersistentVolumeClaim mounted at /data instead."),
]
TaskOption = Annotated[
    str | None,
    typer.Option(
        help="The task: a name registered under the entry-point group jobkit.tasks, or "
        "package.module:function; default: TASK, else the built-in aggregate.",
    ),
]
CommandOption = Annotated[
    str | None,
    typer.Option(
        "--command",
        help="A program run per item instead, e.g. 'wordcount {input} {output_dir}' ({item}: the "
        "item itself); default: TASK_COMMAND.",
    ),
]
NoInputOption = Annotated[
    bool,
    typer.Option(
        "--no-input",
        help="Items are not files: the task gets the message body alone (as NO_INPUT=true).",
    ),
]
ClusterBrokerOption = Annotated[
    str,
    typer.Option(
        envvar="CLUSTER_BROKER_URL",
        help="BROKER_URL as pods see it; its user and password become RabbitMQ's.",
    ),
]


@contextmanager
def _settings(
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


def _print_json(data: object) -> None:
    out.print(json.dumps(data, indent=2), markup=False)


@app.command()
def publish(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Items to publish; default: every *.csv under INPUT_URL."),
    ] = None,
    source: Annotated[
        typer.FileText | None,
        typer.Option(
            "--from",
            help="Also publish the items in this file, one per line ('-': standard input); "
            "blank lines are skipped. Items need not be files (see NO_INPUT).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Publish one persistent message per item and wait until the broker confirms each. Items
    are file names under INPUT_URL, or anything at all for a task run with NO_INPUT (parameters,
    key ranges, frame numbers); they are published as given, without looking them up. The items
    are also kept with the outputs, so 'jobkit status' can account for every one.

    Example: jobkit publish temperature1.csv temperature2.csv
    """
    from publisher.publish import publish_items, read_items
    from publisher.reconcile import record_published
    from publisher.status import read_depth, read_inputs

    with _settings() as settings:
        items = list(names or []) + (read_items(source) if source else [])
        if not items and settings.no_input:
            raise ConfigError(
                "Nothing to publish: with NO_INPUT, give the items as arguments or with --from."
            )
        items = items or read_inputs(settings)
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
        record_published(
            open_store(settings.output_url, settings, create=True), settings.queue, items
        )
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
    """Show the queue's depth, every dead letter with its reason, the outputs written, and
    whether every published item is done, dead-lettered or queued.

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
                "reconciliation": snapshot.reconciliation.to_dict(),
                "dead_letters": [vars(letter) for letter in snapshot.dead_letters],
                "outputs": snapshot.outputs,
            }
        )
    else:
        print_status(out, snapshot, settings.output_url)


dead_app = typer.Typer(
    no_args_is_help=True,
    help="The dead-letter queue: items that can never succeed, with why.\n\n"
    "Example: jobkit dead list",
)
app.add_typer(dead_app, name="dead")


@dead_app.command("list")
def dead_list(as_json: JsonOption = False) -> None:
    """Show every dead letter with its reason, attempts and the broker's x-death history; they
    stay in the queue.

    Example: jobkit dead list --json
    """
    from publisher.dead import list_dead_letters
    from publisher.display import print_dead_letters

    with _settings() as settings:
        letters = list_dead_letters(settings)
    if as_json:
        _print_json([vars(letter) for letter in letters])
    elif letters:
        print_dead_letters(out, letters, history=True)
    else:
        out.print(f"No dead letters in {settings.dead_queue!r}.", markup=False)


@dead_app.command("requeue")
def dead_requeue(
    names: Annotated[
        list[str] | None, typer.Argument(help="Items to put back; default: all of them.")
    ] = None,
) -> None:
    """Put dead letters back on the work queue, after fixing what made them fail.

    Example: jobkit dead requeue temperature3.csv
    """
    from publisher.dead import requeue_dead_letters

    with _settings() as settings:
        moved = requeue_dead_letters(settings, set(names) if names else None)
    missing = sorted(set(names or []) - set(moved))
    out.print(f"Requeued {len(moved)} items to {settings.queue!r}.", markup=False)
    if missing:
        err.print(f"error: not in {settings.dead_queue!r}: {', '.join(missing)}", markup=False)
        raise typer.Exit(int(ExitCode.CONFIG))


@app.command()
def purge(
    dead: Annotated[
        bool, typer.Option("--dead", help="Purge the dead-letter queue instead.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
) -> None:
    """Delete every message waiting in the work queue (or, with --dead, the dead-letter queue).
    Purging the work queue also starts a new batch: what was published is no longer expected.

    Example: jobkit purge --yes
    """
    from publisher.publish import purge_queue
    from publisher.reconcile import forget_published

    with _settings() as settings:
        queue = settings.dead_queue if dead else settings.queue
        if not yes:
            typer.confirm(f"Delete every message in {queue!r}?", abort=True)
        purged = purge_queue(settings, queue)
        if not dead:
            forget_published(open_store(settings.output_url, settings, create=True), queue)
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
        store = open_store(str(out_dir) if out_dir else settings.input_url, settings, create=True)
        store.check()
        names = write_samples(store, files, rows, seed)
    out.print(f"Wrote {len(names)} files of {rows:,} readings to {store}.", markup=False)


@app.command()
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

    from publisher.upload import upload_files

    with _settings() as settings:
        settings.check_location("DESTINATION", destination)
        origin = open_store(str(source), settings)
        origin.check()
        names = origin.list(suffix)
        target = open_store(destination, settings, create=True)
        target.check()
        with Progress(console=out, transient=True) as progress:
            bar = progress.add_task("upload", total=len(names))
            uploaded, skipped = upload_files(
                origin, target, names, lambda name, fresh: progress.advance(bar)
            )
    out.print(f"Uploaded {uploaded} files to {target}; {skipped} were already there.", markup=False)


@app.command()
def manifests(
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Write rabbitmq.yaml, secret.yaml, job.yaml here; else print."),
    ] = None,
    completions: CompletionsOption = None,
    parallelism: ParallelismOption = 3,
    backoff_limit: BackoffOption = 6,
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
            help="Seed 000's azure_credentials.json: put in the Secret, mounted read-only, and "
            "named by AZURE_CREDENTIALS_PATH.",
        ),
    ] = None,
    name: NameOption = "jobkit",
    image: ImageOption = DEFAULT_IMAGE,
    pull_policy: PullPolicyOption = "IfNotPresent",
    ttl_seconds: TtlOption = 3600,
    active_deadline_seconds: DeadlineOption = None,
    requests: RequestsOption = "250m,256Mi",
    limits: LimitsOption = "1,1Gi",
    data_host_path: HostPathOption = None,
    data_claim: ClaimOption = None,
    cluster_broker_url: ClusterBrokerOption = DEFAULT_CLUSTER_BROKER_URL,
    drain: DrainOption = False,
    task: TaskOption = None,
    command: CommandOption = None,
    no_input: NoInputOption = False,
) -> None:
    """Render the Kubernetes manifests: RabbitMQ (StatefulSet with a volume claim, Service),
    the Secret, and the Job with completions = the queue depth now and a podFailurePolicy
    from the worker's exit codes.

    Example: jobkit manifests --data-host-path /data --out k8s
    """
    from publisher.manifests import render_files, write_manifests

    fixed = 1 if keda else parallelism if drain else None
    with _settings(task, command, no_input) as settings:
        options = _job_options(
            settings, _completions(settings, completions, fixed),
            parallelism, backoff_limit, name, image, pull_policy, ttl_seconds,
            active_deadline_seconds, requests, limits, data_host_path, data_claim, drain,
        )  # fmt: skip
        credentials = azure_credentials.read_bytes() if azure_credentials else None
        files = render_files(options, cluster_broker_url, credentials, keda)
        if out_dir is None:
            out.print(_joined(files), markup=False, end="")
            return
        for path in write_manifests(out_dir, files):
            out.print(f"Wrote {path}", markup=False, highlight=False)


@app.command()
def run(
    parallelism: Annotated[
        int, typer.Option(min=1, help="Workers at once; default: the number of CPUs.")
    ] = os.cpu_count() or 1,
    completions: CompletionsOption = None,
    backoff_limit: BackoffOption = 6,
    log_file: Annotated[
        Path, typer.Option(help="Where the workers' logs go; the run record is kept beside it.")
    ] = DEFAULT_RUN_DIR / "run.log",
    drain: DrainOption = False,
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
    name: NameOption = "jobkit",
    image: ImageOption = DEFAULT_IMAGE,
    pull_policy: PullPolicyOption = "IfNotPresent",
    ttl_seconds: TtlOption = 3600,
    active_deadline_seconds: DeadlineOption = None,
    requests: RequestsOption = "250m,256Mi",
    limits: LimitsOption = "1,1Gi",
    data_host_path: HostPathOption = None,
    data_claim: ClaimOption = None,
    cluster_broker_url: ClusterBrokerOption = DEFAULT_CLUSTER_BROKER_URL,
    task: TaskOption = None,
    command: CommandOption = None,
    no_input: NoInputOption = False,
) -> None:
    """Run the job locally: worker processes, as a Kubernetes Job runs pods, until the queue is
    empty; then report. With --kube, apply the manifests to the current kubectl context and
    follow the Job instead. Exits 3 if an item was dead-lettered, 1 at the backoff limit.

    Example: jobkit run --parallelism 3
    """
    from publisher.display import job_progress
    from publisher.runner import LocalRunner

    with _settings(task, command, no_input) as settings:
        if kube:
            from publisher.manifests import render_files

            options = _job_options(
                settings, _completions(settings, completions, parallelism if drain else None),
                parallelism, backoff_limit, name, image, pull_policy, ttl_seconds,
                active_deadline_seconds, requests, limits, data_host_path, data_claim, drain,
            )  # fmt: skip
            report = _run_kube(
                settings, options, render_files(options, cluster_broker_url), as_json, dry_run
            )
            outputs = f"{options.output_url} (in the pods)"
            logs = f"kubectl logs -l job-name={options.name}"
        else:
            runner = LocalRunner(settings, parallelism, completions, backoff_limit, log_file, drain)
            with job_progress(out, enabled=not as_json) as on_progress:
                report = runner.run(on_progress)
            outputs, logs = settings.output_url, str(log_file)
        _finish(settings, report, as_json, outputs, logs)
        _keep_run(settings, report, drain, log_file, with_report, as_json)
    raise typer.Exit(int(report.exit_code))


def _keep_run(
    settings: Settings,
    report: JobReport,
    drain: bool,
    log_file: Path,
    with_report: bool,
    as_json: bool,
) -> None:
    """Record the run beside the log file; with `with_report`, write the batch report there
    (saying where on stderr when stdout is JSON)."""
    from publisher.runrecord import record_run, save_run

    run_path = log_file.with_name(RUN_RECORD_NAME)
    save_run(run_path, record_run(report, settings, drain))
    if with_report:
        _write_report(settings, run_path, log_file.with_name(REPORT_NAME), err if as_json else out)


@app.command()
def report(
    out_path: Annotated[
        Path, typer.Option("--out", help="Where to write the HTML page.")
    ] = DEFAULT_RUN_DIR / REPORT_NAME,
    run_path: Annotated[
        Path, typer.Option("--run", help="The run record 'jobkit run' wrote beside its log.")
    ] = DEFAULT_RUN_DIR / RUN_RECORD_NAME,
) -> None:
    """Write the batch report, one self-contained HTML page: the last run's timeline (one bar
    per attempt on its worker), the outcome (done, dead-lettered with reasons, retried, still
    queued, wall time, rate), the hourly curves of the results, and the versions and settings.
    Reads the run record, the success records, the dead letters (left in place) and the queue.

    Example: jobkit report --out report.html
    """
    with _settings() as settings:
        _write_report(settings, run_path, out_path, out)


@app.command()
def plot(
    result: Annotated[Path, typer.Argument(help="A result: Datetime,mean,std,max,min.")],
    out_path: Annotated[
        Path | None, typer.Option("--out", help="The PNG to write; default: RESULT's name.png.")
    ] = None,
) -> None:
    """Draw one result's hourly mean with its min-max band as a PNG; hours without readings
    are gaps.

    Example: jobkit plot data/output/temperature1_aggregated.csv --out temperature1.png
    """
    from publisher.charts import curve_png
    from publisher.curves import read_curve

    target = out_path or Path(result.with_suffix(".png").name)
    with _settings():
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


def _write_report(settings: Settings, run_path: Path, out_path: Path, console: Console) -> None:
    """Gather the batch's facts, write the report page, and say where it is."""
    from publisher.report import read_batch, summarize
    from publisher.report_html import render_report

    batch = read_batch(settings, run_path)
    summary = summarize(batch)
    _write_file(out_path, render_report(batch, summary).encode())
    console.print(
        f"Wrote the report to {out_path}: {summary.done} done, {summary.dead} dead-lettered, "
        f"{summary.retried} retried, {summary.queued} still queued.",
        markup=False,
        highlight=False,
    )


def _run_kube(
    settings: Settings,
    options: JobOptions,
    files: dict[str, list[Manifest]],
    as_json: bool,
    dry_run: bool,
) -> JobReport:
    """`run --kube`: apply the manifests and follow the Job, or print them with --dry-run."""
    from publisher.display import job_progress
    from publisher.kube import KubeRunner
    from publisher.manifests import mask_secrets

    if dry_run:
        out.print(_joined(mask_secrets(files)), markup=False, end="")
        raise typer.Exit(0)
    runner = KubeRunner(settings, options, [doc for docs in files.values() for doc in docs])
    with job_progress(out, enabled=not as_json) as on_progress:
        return runner.run(on_progress)


def _finish(settings: Settings, report: JobReport, as_json: bool, outputs: str, logs: str) -> None:
    """Reconcile what was published with where it is now, and print the report.

    Called once no worker holds an item, so none is in flight.
    """
    from publisher.display import print_report
    from publisher.status import read_status

    reconciliation = read_status(settings, in_flight=0).reconciliation
    if as_json:
        _print_json({**report.to_dict(), "reconciliation": reconciliation.to_dict()})
    else:
        print_report(out, report, settings.queue, outputs, logs)
        style = None if reconciliation.adds_up else "bold yellow"
        out.print(reconciliation.summary(), style=style, markup=False, highlight=False)


def _completions(settings: Settings, completions: int | None, fixed: int | None) -> int:
    """The given completions, else `fixed` (1 for a ScaledJob's Jobs, the parallelism when each
    pod drains the queue), else the queue's depth now."""
    from publisher.status import read_depth

    if completions is not None:
        return completions
    return fixed if fixed is not None else read_depth(settings)


def _joined(files: dict[str, list[Manifest]]) -> str:
    from publisher.manifests import dump

    return dump([doc for docs in files.values() for doc in docs])


def _job_options(
    settings: Settings,
    completions: int,
    parallelism: int,
    backoff_limit: int,
    name: str,
    image: str,
    pull_policy: str,
    ttl_seconds: int,
    active_deadline_seconds: int | None,
    requests: str,
    limits: str,
    data_host_path: str | None,
    data_claim: str | None,
    drain: bool = False,
) -> JobOptions:
    """The Job's options from the command line; raises ConfigError for a malformed one."""
    if pull_policy not in ("Always", "IfNotPresent", "Never"):
        raise ConfigError(f"--pull-policy {pull_policy!r} is not Always, IfNotPresent or Never.")
    if data_host_path and data_claim:
        raise ConfigError("Give --data-host-path or --data-claim, not both.")
    (cpu_request, memory_request), (cpu_limit, memory_limit) = (
        _pair(option, value) for option, value in (("--requests", requests), ("--limits", limits))
    )
    return JobOptions(
        queue=settings.queue,
        completions=completions,
        name=name,
        parallelism=parallelism,
        backoff_limit=backoff_limit,
        ttl_seconds=ttl_seconds,
        active_deadline_seconds=active_deadline_seconds,
        image=image,
        pull_policy=pull_policy,
        cpu_request=cpu_request,
        memory_request=memory_request,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
        data_host_path=data_host_path,
        data_claim=data_claim,
        log_level=settings.log_level,
        drain=drain,
        task_env=tuple(settings.task_env().items()),
    )


def _pair(option: str, value: str) -> tuple[str, str]:
    parts = [part.strip() for part in value.split(",")]
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"{option} {value!r} is not CPU,MEMORY (for example 250m,256Mi).")
    return parts[0], parts[1]
