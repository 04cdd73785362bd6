"""Kubernetes manifests for the job, as data: RabbitMQ, the Secret, the Job or a KEDA ScaledJob."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from worker.errors import FAILURE_ACTIONS, ConfigError
from worker.settings import mask_url

Manifest = dict[str, Any]

DEFAULT_IMAGE = "jobkit-worker:0.1.0"
RABBITMQ_IMAGE = "rabbitmq:3.13"
DEFAULT_CLUSTER_BROKER_URL = "amqp://jobkit:jobkit@rabbitmq:5672/%2F"
CONTAINER = "worker"
WORKER_UID = 10001  # the numeric user of images/worker.Dockerfile, so runAsNonRoot can check it
AZURE_KEY = "azure_credentials.json"
AZURE_DIR = "/etc/jobkit/azure"
DATA_DIR = "/data"
HEADER = "# Rendered by 'jobkit manifests'; edit the options, not this file.\n"
_LABELS = {"app.kubernetes.io/part-of": "amqp-jobkit"}


@dataclass(frozen=True)
class JobOptions:
    """Everything the Job (or ScaledJob) is rendered from."""

    queue: str
    completions: int
    name: str = "jobkit"
    parallelism: int = 3
    backoff_limit: int = 6
    ttl_seconds: int = 3600
    active_deadline_seconds: int | None = None
    image: str = DEFAULT_IMAGE
    pull_policy: str = "IfNotPresent"
    cpu_request: str = "250m"
    memory_request: str = "256Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"
    input_url: str = f"{DATA_DIR}/input"
    output_url: str = f"{DATA_DIR}/output"
    data_host_path: str | None = None
    data_claim: str | None = None
    secret: str = "jobkit"
    azure_credentials: bool = False
    log_level: str = "INFO"
    drain: bool = False  # each pod takes items until the queue is empty
    task_env: tuple[tuple[str, str], ...] = ()  # TASK or TASK_COMMAND and the like; "" is unset


def pod_failure_policy() -> Manifest:
    """The Job's podFailurePolicy, one rule per worker exit code that does not simply count."""
    rules: list[Manifest] = [
        {
            "action": str(action),
            "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [int(code)]},
        }
        for code, action in sorted(FAILURE_ACTIONS.items())
    ]
    # An evicted or preempted pod returned its item to the queue; that is not the worker's fault.
    rules.append({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]})
    return {"rules": rules}


def render_job(options: JobOptions) -> Manifest:
    """The Job: `completions` workers must succeed, each taking one item from the queue."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": options.name, "labels": _labels("worker")},
        "spec": _job_spec(options),
    }


def render_scaled_job(options: JobOptions) -> list[Manifest]:
    """A KEDA TriggerAuthentication and ScaledJob: one Job per queued item, for queues that fill."""
    spec = _job_spec(options)
    spec.update(completions=1, parallelism=1)
    auth = f"{options.name}-rabbitmq"
    trigger_auth = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": auth, "labels": _labels("worker")},
        "spec": {
            "secretTargetRef": [{"parameter": "host", "name": options.secret, "key": "BROKER_URL"}]
        },
    }
    scaled_job = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledJob",
        "metadata": {"name": options.name, "labels": _labels("worker")},
        "spec": {
            "jobTargetRef": spec,
            "pollingInterval": 10,
            "maxReplicaCount": options.parallelism,
            "successfulJobsHistoryLimit": 10,
            "failedJobsHistoryLimit": 10,
            "triggers": [
                {
                    "type": "rabbitmq",
                    "metadata": {
                        "protocol": "amqp",
                        "queueName": options.queue,
                        "mode": "QueueLength",
                        "value": "1",
                    },
                    "authenticationRef": {"name": auth},
                }
            ],
        },
    }
    return [trigger_auth, scaled_job]


def _job_spec(options: JobOptions) -> Manifest:
    spec: Manifest = {
        "completions": options.completions,
        "parallelism": options.parallelism,
        "backoffLimit": options.backoff_limit,
        "ttlSecondsAfterFinished": options.ttl_seconds,
        "podFailurePolicy": pod_failure_policy(),
        "template": {
            "metadata": {"labels": _labels("worker")},
            "spec": _pod_spec(options),
        },
    }
    if options.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = options.active_deadline_seconds
    return spec


def _pod_spec(options: JobOptions) -> Manifest:
    env: list[Manifest] = [
        {
            "name": "BROKER_URL",
            "valueFrom": {"secretKeyRef": {"name": options.secret, "key": "BROKER_URL"}},
        },
        {"name": "QUEUE", "value": options.queue},
        {"name": "INPUT_URL", "value": options.input_url},
        {"name": "OUTPUT_URL", "value": options.output_url},
        {"name": "LOG_LEVEL", "value": options.log_level},
        *({"name": name, "value": value} for name, value in options.task_env if value),
    ]
    # Python and pyarrow may want a scratch directory; the root file system is read-only.
    mounts: list[Manifest] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[Manifest] = [{"name": "tmp", "emptyDir": {}}]
    if options.data_host_path is not None:
        volumes.append(
            {"name": "data", "hostPath": {"path": options.data_host_path, "type": "Directory"}}
        )
    elif options.data_claim is not None:
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": options.data_claim}})
    if len(volumes) > 1:
        mounts.append({"name": "data", "mountPath": DATA_DIR})
    if options.azure_credentials:
        env.append({"name": "AZURE_CREDENTIALS_PATH", "value": f"{AZURE_DIR}/{AZURE_KEY}"})
        mounts.append({"name": "azure-credentials", "mountPath": AZURE_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "azure-credentials",
                "secret": {
                    "secretName": options.secret,
                    "items": [{"key": AZURE_KEY, "path": AZURE_KEY}],
                    "defaultMode": 0o440,
                },
            }
        )
    container = {
        "name": CONTAINER,
        "image": options.image,
        "imagePullPolicy": options.pull_policy,
        **({"args": ["--drain"]} if options.drain else {}),
        "env": env,
        "resources": {
            "requests": {"cpu": options.cpu_request, "memory": options.memory_request},
            "limits": {"cpu": options.cpu_limit, "memory": options.memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    return {
        # Exit codes are the worker's answer; a restarted container would hide them from the Job.
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "fsGroup": WORKER_UID,  # makes the mounted Secret's files readable by the worker
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }


def render_secret(name: str, broker_url: str, azure_credentials: bytes | None = None) -> Manifest:
    """The Secret: BROKER_URL for the workers, RabbitMQ's user, and the Azure credentials file."""
    parts = urlsplit(broker_url)
    if parts.scheme not in ("amqp", "amqps") or not parts.username or not parts.password:
        raise ConfigError(
            f"Cluster broker URL {mask_url(broker_url)!r} needs the form "
            "amqp://USER:PASSWORD@HOST:5672/%2F, so RabbitMQ and the workers share one user."
        )
    data = {
        "BROKER_URL": broker_url,
        "RABBITMQ_DEFAULT_USER": unquote(parts.username),
        "RABBITMQ_DEFAULT_PASS": unquote(parts.password),
    }
    if azure_credentials is not None:
        data[AZURE_KEY] = _check_azure_credentials(azure_credentials)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": _labels("config")},
        "type": "Opaque",
        "stringData": data,
    }


def _check_azure_credentials(content: bytes) -> str:
    try:
        parsed = json.loads(content)
    except ValueError as exc:
        raise ConfigError(f"The Azure credentials file is not JSON ({exc}).") from exc
    missing = [
        key
        for key in ("storage_account", "account_key")
        if not isinstance(parsed, dict) or key not in parsed
    ]
    if missing:
        raise ConfigError(
            f"The Azure credentials file lacks {', '.join(missing)}; it must be "
            '{"storage_account": ..., "account_key": ...}.'
        )
    return content.decode()


def render_rabbitmq(
    secret: str, storage: str = "1Gi", image: str = RABBITMQ_IMAGE
) -> list[Manifest]:
    """RabbitMQ as a one-replica StatefulSet with a persistent volume, and its Service on 5672."""
    labels = _labels("broker")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "rabbitmq", "labels": labels},
        "spec": {
            "selector": labels,
            "ports": [{"name": "amqp", "port": 5672, "targetPort": "amqp"}],
        },
    }
    user_env = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for key in ("RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS")
    ]
    probe = {"exec": {"command": ["rabbitmq-diagnostics", "-q", "ping"]}, "timeoutSeconds": 10}
    container = {
        "name": "rabbitmq",
        "image": image,
        "ports": [{"name": "amqp", "containerPort": 5672}],
        "env": user_env,
        "volumeMounts": [{"name": "rabbitmq-data", "mountPath": "/var/lib/rabbitmq"}],
        "readinessProbe": {**probe, "initialDelaySeconds": 10, "periodSeconds": 10},
        "livenessProbe": {**probe, "initialDelaySeconds": 60, "periodSeconds": 30},
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"memory": "1Gi"},
        },
    }
    stateful_set = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "rabbitmq", "labels": labels},
        "spec": {
            "serviceName": "rabbitmq",
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 60,
                    "containers": [container],
                },
            },
            # A claim, not emptyDir: the queue survives the pod moving to another node.
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "rabbitmq-data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": storage}},
                    },
                }
            ],
        },
    }
    return [service, stateful_set]


def render_files(
    options: JobOptions,
    broker_url: str,
    azure_credentials: bytes | None = None,
    keda: bool = False,
) -> dict[str, list[Manifest]]:
    """Every file `jobkit manifests` writes, by name: RabbitMQ, the Secret, the Job."""
    options = replace(options, azure_credentials=azure_credentials is not None)
    return {
        "rabbitmq.yaml": render_rabbitmq(options.secret),
        "secret.yaml": [render_secret(options.secret, broker_url, azure_credentials)],
        **(
            {"scaledjob.yaml": render_scaled_job(options)}
            if keda
            else {"job.yaml": [render_job(options)]}
        ),
    }


def mask_secrets(files: dict[str, list[Manifest]]) -> dict[str, list[Manifest]]:
    """The same files with every Secret value shown as '***' (the URL keeps its user and host)."""
    masked: dict[str, list[Manifest]] = {}
    for file_name, manifests in files.items():
        masked[file_name] = []
        for manifest in manifests:
            if manifest["kind"] == "Secret":
                data = {
                    key: mask_url(value) if key == "BROKER_URL" else "***"
                    for key, value in manifest["stringData"].items()
                }
                manifest = {**manifest, "stringData": data}
            masked[file_name].append(manifest)
    return masked


def _labels(component: str) -> dict[str, str]:
    return {**_LABELS, "app.kubernetes.io/name": f"jobkit-{component}"}


def dump(manifests: list[Manifest]) -> str:
    """The manifests as one YAML stream, keys in the order written here."""
    import yaml  # only when writing: most commands never do, and it costs 20 ms to import

    return HEADER + yaml.safe_dump_all(manifests, sort_keys=False, explicit_start=True)


def write_manifests(out_dir: Path, files: dict[str, list[Manifest]]) -> list[Path]:
    """Write each file's manifests to `out_dir/<file>`; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, manifests in files.items():
        path = out_dir / file_name
        path.write_text(dump(manifests))
        paths.append(path)
    return paths
