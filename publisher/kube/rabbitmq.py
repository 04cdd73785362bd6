"""RabbitMQ for the job, as Kubernetes objects: one node, or a cluster that survives losing one.

Every pod meets Pod Security "restricted": RabbitMQ runs as its image's user with a read-only
root file system, writing only to its volume claim and an empty /tmp, with its configuration
from a ConfigMap. A cluster forms itself with RabbitMQ's Kubernetes peer discovery (4.1 and
later: the pods join the one with ordinal 0, with no access to the Kubernetes API).
"""

from __future__ import annotations

from jobkit_publisher.kube.objects import Manifest, labels

RABBITMQ_IMAGE = "rabbitmq:4.1.8"  # pinned: a floating tag changes the broker under a cluster
RABBITMQ_UID = 999  # the rabbitmq user of the official image
NAME = "rabbitmq"  # the StatefulSet, and the Service the workers connect to
NODES_SERVICE = "rabbitmq-nodes"  # headless: each pod's stable DNS name, for the cluster
COOKIE_KEY = "ERLANG_COOKIE"  # in the Secret: the nodes and their CLI tools share it
_CONFIG = """\
listeners.tcp.default = 5672
log.console = true
log.file = false
"""
_CLUSTER_CONFIG = """\
cluster_formation.peer_discovery_backend = k8s
cluster_partition_handling = pause_minority
"""


def render_rabbitmq(
    secret: str,
    replicas: int = 1,
    ack_timeout_seconds: float = 1800.0,
    storage: str = "1Gi",
    image: str = RABBITMQ_IMAGE,
) -> list[Manifest]:
    """RabbitMQ as a StatefulSet of `replicas` nodes with a persistent volume each, behind a
    Service on 5672; with more than one, a PodDisruptionBudget keeps a majority up. Its
    delivery acknowledgement timeout is `ack_timeout_seconds`, which the settings keep above
    the task timeout."""
    manifests = [
        _config_map(replicas, ack_timeout_seconds),
        _service(),
        _nodes_service(),
        _stateful_set(secret, replicas, storage, image),
    ]
    if replicas > 1:
        manifests.append(_disruption_budget(replicas))
    return manifests


def _config_map(replicas: int, ack_timeout_seconds: float) -> Manifest:
    plugins = "[rabbitmq_peer_discovery_k8s]." if replicas > 1 else "[]."
    timeout = f"consumer_timeout = {round(ack_timeout_seconds * 1000)}\n"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{NAME}-config", "labels": labels("broker")},
        "data": {
            "rabbitmq.conf": _CONFIG + timeout + (_CLUSTER_CONFIG if replicas > 1 else ""),
            "enabled_plugins": plugins + "\n",
        },
    }


def _service() -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "labels": labels("broker")},
        "spec": {
            "selector": labels("broker"),
            "ports": [{"name": "amqp", "port": 5672, "targetPort": "amqp"}],
        },
    }


def _nodes_service() -> Manifest:
    """The headless Service the StatefulSet names: a DNS name per pod, ready or not, so that
    nodes find each other while they start."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NODES_SERVICE, "labels": labels("broker")},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": labels("broker"),
            "ports": [
                {"name": "amqp", "port": 5672, "targetPort": "amqp"},
                {"name": "epmd", "port": 4369, "targetPort": "epmd"},
                {"name": "cluster", "port": 25672, "targetPort": "cluster"},
            ],
        },
    }


def _environment(secret: str) -> list[Manifest]:
    def from_secret(name: str) -> Manifest:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": name}}}

    def field(name: str, path: str) -> Manifest:
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}

    # The cookie goes to the server and to the CLI tools the probes run as an argument: a
    # cookie file from a Secret is group-readable, which Erlang refuses.
    cookie = f"-setcookie $({COOKIE_KEY})"
    return [
        from_secret("RABBITMQ_DEFAULT_USER"),
        from_secret("RABBITMQ_DEFAULT_PASS"),
        from_secret(COOKIE_KEY),
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        {"name": "RABBITMQ_USE_LONGNAME", "value": "true"},
        {
            "name": "RABBITMQ_NODENAME",
            "value": f"rabbit@$(POD_NAME).{NODES_SERVICE}.$(POD_NAMESPACE)",
        },
        {"name": "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "value": cookie},
        {"name": "RABBITMQ_CTL_ERL_ARGS", "value": cookie},
    ]


def _stateful_set(secret: str, replicas: int, storage: str, image: str) -> Manifest:
    probe = {"exec": {"command": ["rabbitmq-diagnostics", "-q", "ping"]}, "timeoutSeconds": 10}
    container = {
        "name": "rabbitmq",
        "image": image,
        "ports": [
            {"name": "amqp", "containerPort": 5672},
            {"name": "epmd", "containerPort": 4369},
            {"name": "cluster", "containerPort": 25672},
        ],
        "env": _environment(secret),
        "volumeMounts": [
            {"name": "rabbitmq-data", "mountPath": "/var/lib/rabbitmq"},
            {"name": "config", "mountPath": "/etc/rabbitmq", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "readinessProbe": {**probe, "initialDelaySeconds": 10, "periodSeconds": 10},
        "livenessProbe": {**probe, "initialDelaySeconds": 60, "periodSeconds": 30},
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"memory": "1Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod: Manifest = {
        "automountServiceAccountToken": False,  # peer discovery needs no Kubernetes API
        "terminationGracePeriodSeconds": 60,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RABBITMQ_UID,
            "runAsGroup": RABBITMQ_UID,
            "fsGroup": RABBITMQ_UID,  # makes the volume claim writable by RabbitMQ
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": f"{NAME}-config"}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if replicas > 1:
        # Preferred, not required: a cluster smaller than the replicas (kind's one node) still
        # schedules them all, and a real one spreads them.
        pod["affinity"] = {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": labels("broker")},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": NAME, "labels": labels("broker")},
        "spec": {
            "serviceName": NODES_SERVICE,
            "replicas": replicas,
            "selector": {"matchLabels": labels("broker")},
            "template": {"metadata": {"labels": labels("broker")}, "spec": pod},
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


def _disruption_budget(replicas: int) -> Manifest:
    """A drain takes one node at a time, so a majority of the queue's replicas stays up."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": NAME, "labels": labels("broker")},
        "spec": {
            "maxUnavailable": (replicas - 1) // 2,
            "selector": {"matchLabels": labels("broker")},
        },
    }
