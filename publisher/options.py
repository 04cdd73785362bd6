"""Command-line options that several `jobkit` commands share, and the Job's options from them."""

from __future__ import annotations

from typing import Annotated

import typer

from publisher.manifests import JobOptions
from worker.errors import ConfigError
from worker.settings import Settings

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


def job_options(
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


def completions_or_depth(settings: Settings, completions: int | None, fixed: int | None) -> int:
    """The given completions, else `fixed` (1 for a ScaledJob's Jobs, the parallelism when each
    pod drains the queue), else the queue's depth now."""
    from publisher.status import read_depth

    if completions is not None:
        return completions
    return fixed if fixed is not None else read_depth(settings)


def _pair(option: str, value: str) -> tuple[str, str]:
    parts = [part.strip() for part in value.split(",")]
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"{option} {value!r} is not CPU,MEMORY (for example 250m,256Mi).")
    return parts[0], parts[1]
