"""Command-line options that several `jobkit` commands share, and the Job's options from them."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer

from jobkit_publisher.kube.manifests import (
    DATA_CLAIM,
    DEFAULT_CLUSTER_BROKER_URL,
    DEFAULT_IMAGE,
    DEFAULT_SECRET,
    JobOptions,
    Toleration,
)
from jobkit_publisher.kube.rabbitmq import RABBITMQ_IMAGE
from jobkit_worker.errors import ConfigError
from jobkit_worker.settings import Settings

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
# A label's key (an optional DNS-subdomain prefix and '/', then a name) and its value.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"((?=[^/]{{1,253}}/)[a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(rf"({_LABEL_NAME})?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# A Kubernetes quantity as users write them: 250m, 0.5, 1.5Gi, 256Mi, 1e3.
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
DrainOption = Annotated[
    bool,
    typer.Option(
        "--drain",
        help="Each worker (pod) takes items until the queue is empty: for short items, where "
        "starting a process per item costs more than the item.",
    ),
]
ParallelismOption = Annotated[
    int, typer.Option("--parallelism", "-p", min=1, help="Workers (pods) at once.")
]
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
    typer.Option(
        help="A node's directory mounted at /data instead of the claim (kind: /data); fails Pod "
        "Security baseline, so only for clusters like kind."
    ),
]
ClaimOption = Annotated[
    str | None,
    typer.Option(
        help=f"Your PersistentVolumeClaim mounted at /data; default: {DATA_CLAIM}, rendered in "
        "data.yaml (ReadWriteMany, 10Gi)."
    ),
]
ReplicasOption = Annotated[
    int,
    typer.Option(
        min=1,
        help="RabbitMQ nodes: 3 (recommended in production) survive losing one; 1 for kind.",
    ),
]
ExistingSecretOption = Annotated[
    str | None,
    typer.Option(
        help="Use this existing Secret (BROKER_URL, RABBITMQ_DEFAULT_USER, RABBITMQ_DEFAULT_PASS, "
        "ERLANG_COOKIE) instead of rendering one with a fresh password."
    ),
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
        help="BROKER_URL as pods see it; its user and password become RabbitMQ's (without a "
        "password, a random one is made at each rendering). With --no-broker: the URL of the "
        "cluster's own broker, password included.",
    ),
]
NamespaceOption = Annotated[
    str | None, typer.Option(help="The namespace of every object; default: kubectl's current.")
]
LabelOption = Annotated[
    list[str] | None,
    typer.Option("--label", help="KEY=VALUE on the Job and its pods (repeatable)."),
]
AnnotationOption = Annotated[
    list[str] | None,
    typer.Option(
        "--annotation",
        help="KEY=VALUE on the Job and its pods (repeatable), e.g. example.com/owner=batch-team.",
    ),
]
ServiceAccountOption = Annotated[
    str | None, typer.Option(help="The pods' service account (its token is not mounted).")
]
PriorityClassOption = Annotated[str | None, typer.Option(help="The pods' priority class.")]
NodeSelectorOption = Annotated[
    list[str] | None,
    typer.Option("--node-selector", help="KEY=VALUE a node must be labelled with (repeatable)."),
]
TolerationOption = Annotated[
    list[str] | None,
    typer.Option(
        "--toleration",
        help="KEY[=VALUE][:EFFECT] the pods tolerate, as 'kubectl taint' writes the taint "
        "(repeatable); no VALUE: any value; no EFFECT: every effect.",
    ),
]
EnvOption = Annotated[
    list[str] | None,
    typer.Option("--env", help="NAME=VALUE in the worker's environment (repeatable)."),
]
NoBrokerOption = Annotated[
    bool,
    typer.Option(
        "--no-broker",
        help="Render no RabbitMQ: the workers use the broker --cluster-broker-url names (an "
        "operator's RabbitmqCluster, a chart's, a hosted one).",
    ),
]
BrokerImageOption = Annotated[str, typer.Option(help="The RabbitMQ image rendered.")]


@dataclasses.dataclass(frozen=True)
class JobFlags:
    """The Job's options as the command line gives them: declared here once, they are added to
    every command that renders or runs the Job (see with_job_flags)."""

    completions: CompletionsOption = None
    backoff_limit: BackoffOption = 6
    drain: DrainOption = False
    name: NameOption = "jobkit"
    image: ImageOption = DEFAULT_IMAGE
    pull_policy: PullPolicyOption = "IfNotPresent"
    ttl_seconds: TtlOption = 3600
    active_deadline_seconds: DeadlineOption = None
    requests: RequestsOption = "250m,256Mi"
    limits: LimitsOption = "1,1Gi"
    data_host_path: HostPathOption = None
    data_claim: ClaimOption = None
    cluster_broker_url: ClusterBrokerOption = DEFAULT_CLUSTER_BROKER_URL
    broker_replicas: ReplicasOption = 1
    existing_secret: ExistingSecretOption = None
    namespace: NamespaceOption = None
    label: LabelOption = None
    annotation: AnnotationOption = None
    service_account: ServiceAccountOption = None
    priority_class: PriorityClassOption = None
    node_selector: NodeSelectorOption = None
    toleration: TolerationOption = None
    env: EnvOption = None
    no_broker: NoBrokerOption = False
    broker_image: BrokerImageOption = RABBITMQ_IMAGE


def with_job_flags(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with JobFlags' options after its own; it receives them as `job: JobFlags`."""
    hints = typing.get_type_hints(JobFlags, include_extras=True)
    flags = [
        inspect.Parameter(
            field.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=field.default,
            annotation=hints[field.name],
        )
        for field in dataclasses.fields(JobFlags)
    ]
    signature = inspect.signature(command, eval_str=True)
    own = [parameter for parameter in signature.parameters.values() if parameter.name != "job"]

    @functools.wraps(command)
    def with_flags(**options: Any) -> None:
        job = JobFlags(**{flag.name: options.pop(flag.name) for flag in flags})
        command(job=job, **options)

    with_flags.__signature__ = signature.replace(parameters=[*own, *flags])  # type: ignore[attr-defined]
    return with_flags


def job_options(
    settings: Settings, job: JobFlags, parallelism: int, completions: int
) -> JobOptions:
    """The Job's options from the command line; raises ConfigError for a malformed one."""
    if job.pull_policy not in ("Always", "IfNotPresent", "Never"):
        raise ConfigError(
            f"--pull-policy {job.pull_policy!r} is not Always, IfNotPresent or Never."
        )
    if job.data_host_path and job.data_claim:
        raise ConfigError("Give --data-host-path or --data-claim, not both.")
    if job.no_broker and (job.broker_image != RABBITMQ_IMAGE or job.broker_replicas != 1):
        raise ConfigError(
            "--no-broker renders no RabbitMQ: give --broker-image and --broker-replicas only "
            "for the one the kit renders."
        )
    if not _DNS_LABEL.fullmatch(job.name):
        raise ConfigError(
            f"--name {job.name!r} is not a Job name Kubernetes takes: at most 63 lowercase "
            "letters, digits and '-', starting and ending with a letter or digit."
        )
    if job.namespace and not _DNS_LABEL.fullmatch(job.namespace):
        raise ConfigError(
            f"--namespace {job.namespace!r} is not a namespace Kubernetes takes: at most 63 "
            "lowercase letters, digits and '-', starting and ending with a letter or digit."
        )
    for option, name in (
        ("--existing-secret", job.existing_secret),
        ("--data-claim", job.data_claim),
        ("--service-account", job.service_account),
        ("--priority-class", job.priority_class),
    ):
        if name and not _DNS_SUBDOMAIN.fullmatch(name):
            raise ConfigError(
                f"{option} {name!r} is not a name Kubernetes takes: at most 253 lowercase "
                "letters, digits, '-' and '.', starting and ending with a letter or digit."
            )
    (cpu_request, memory_request), (cpu_limit, memory_limit) = (
        _pair(option, value)
        for option, value in (("--requests", job.requests), ("--limits", job.limits))
    )
    return JobOptions(
        queue=settings.queue,
        completions=completions,
        name=job.name,
        parallelism=parallelism,
        backoff_limit=job.backoff_limit,
        ttl_seconds=job.ttl_seconds,
        active_deadline_seconds=job.active_deadline_seconds,
        image=job.image,
        pull_policy=job.pull_policy,
        cpu_request=cpu_request,
        memory_request=memory_request,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
        data_host_path=job.data_host_path,
        data_claim=job.data_claim or DATA_CLAIM,
        secret=job.existing_secret or DEFAULT_SECRET,
        broker_replicas=job.broker_replicas,
        log_level=settings.log_level,
        drain=job.drain,
        task_env=tuple(settings.task_env().items()),
        broker_ack_timeout_seconds=settings.broker_ack_timeout_seconds,
        namespace=job.namespace,
        labels=_pairs("--label", job.label, _LABEL_VALUE),
        annotations=_pairs("--annotation", job.annotation, None),
        service_account=job.service_account,
        priority_class=job.priority_class,
        node_selector=_pairs("--node-selector", job.node_selector, _LABEL_VALUE),
        tolerations=tuple(_toleration(value) for value in job.toleration or ()),
        env=_pairs("--env", job.env, None, _ENV_NAME, "NAME=VALUE with NAME a variable's name."),
        broker=not job.no_broker,
        broker_image=job.broker_image,
    )


_LABEL_KEY_SAYS = (
    "KEY=VALUE with a key Kubernetes takes: an optional DNS prefix and '/', then at most 63 "
    "letters, digits, '-', '_' and '.'."
)


def _pairs(
    option: str,
    values: list[str] | None,
    value_rule: re.Pattern[str] | None,
    key_rule: re.Pattern[str] = _LABEL_KEY,
    key_says: str = _LABEL_KEY_SAYS,
) -> tuple[tuple[str, str], ...]:
    """KEY=VALUE options as pairs, each key `key_rule`'s (a label key unless told) and each
    value `value_rule`'s; the last of a key wins."""
    pairs = {}
    for given in values or ():
        key, equals, value = given.partition("=")
        if not equals or not key_rule.fullmatch(key):
            raise ConfigError(f"{option} {given!r} is not {key_says}")
        if value_rule is not None and not value_rule.fullmatch(value):
            raise ConfigError(
                f"{option} {given!r} has a value Kubernetes refuses: at most 63 letters, "
                "digits, '-', '_' and '.', starting and ending with a letter or digit."
            )
        pairs[key] = value
    return tuple(pairs.items())


def _toleration(given: str) -> Toleration:
    """A --toleration, KEY[=VALUE][:EFFECT]."""
    taint, colon, effect = given.rpartition(":") if ":" in given else (given, "", "")
    key, equals, value = taint.partition("=")
    if (
        not _LABEL_KEY.fullmatch(key)
        or (equals and not _LABEL_VALUE.fullmatch(value))
        or (colon and effect not in _TAINT_EFFECTS)
    ):
        raise ConfigError(
            f"--toleration {given!r} is not KEY[=VALUE][:EFFECT], with a key and value "
            f"Kubernetes takes and EFFECT one of {', '.join(_TAINT_EFFECTS)}."
        )
    return Toleration(key, value if equals else None, effect if colon else None)


def completions_or_depth(settings: Settings, completions: int | None, fixed: int | None) -> int:
    """The given completions, else `fixed` (1 for a ScaledJob's Jobs, the parallelism when each
    pod drains the queue), else the queue's depth now, read without declaring the queue; says
    on stderr when that is 0, which makes a Job that completes with no pod."""
    from jobkit_publisher.cli.terminal import err
    from jobkit_publisher.queue.status import read_depth

    if completions is not None:
        return completions
    if fixed is not None:
        return fixed
    depth = read_depth(settings)
    if depth == 0:
        err.print(
            f"warning: queue {settings.queue!r} holds no item (or does not exist), so the Job "
            "has completions 0 and ends at once without a pod; publish first, or give "
            "--completions.",
        )
    return depth


def _pair(option: str, value: str) -> tuple[str, str]:
    parts = [part.strip() for part in value.split(",")]
    if len(parts) != 2 or not all(_QUANTITY.fullmatch(part) for part in parts):
        raise ConfigError(
            f"{option} {value!r} is not CPU,MEMORY in Kubernetes quantities (for example "
            "250m,256Mi: a number, then at most a suffix such as m, k, M, Ki or Mi)."
        )
    return parts[0], parts[1]
