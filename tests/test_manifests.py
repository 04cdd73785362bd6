"""`jobkit manifests`: valid Kubernetes objects that say what the worker's contract says."""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import pika
import pika.exceptions
import pytest
import yaml
from conftest import ROOT, jobkit
from pod_security import BASELINE, pod_specs, violations
from typer.testing import CliRunner

from jobkit_publisher.cli.app import app
from jobkit_publisher.kube.manifests import (
    AZURE_DIR,
    AZURE_KEY,
    JobOptions,
    Toleration,
    render_files,
    render_scaled_job,
)
from jobkit_publisher.kube.objects import Manifest, dump
from jobkit_publisher.kube.runner import without_secrets
from jobkit_publisher.queue.publish import publish_items
from jobkit_worker.errors import ExitCode
from jobkit_worker.settings import Settings

CLUSTER_URL = "amqp://jobkit:s3cret@rabbitmq:5672/%2F"
CREDENTIALS = b'{"storage_account": "jobkitdata", "account_key": "a2V5"}'


def _minor(version: str) -> str:
    return re.sub(r"^(\d+\.\d+).*", r"\1", version)


def _versions() -> list[str]:
    """The two newest Kubernetes versions whose schemas kubernetes-validate ships."""
    versions = {_minor(version) for version in kubernetes_validate.utils.all_versions()}
    return sorted(versions, key=lambda v: tuple(int(part) for part in v.split(".")))[-2:]


VERSIONS = _versions()


def _all(options: JobOptions, **kwargs: Any) -> list[Manifest]:
    files = render_files(options, CLUSTER_URL, **kwargs)
    return [manifest for manifests in files.values() for manifest in manifests]


OPTIONS = JobOptions(queue="temperature_job", completions=6)
EVERY_OPTION = replace(
    OPTIONS,
    namespace="batch",
    labels=(("team", "climate"), ("kueue.x-k8s.io/queue-name", "batch-queue")),
    annotations=(("example.com/owner", "ops@example.com"),),
    service_account="jobkit-worker",
    priority_class="batch-low",
    node_selector=(("pool", "batch"),),
    tolerations=(Toleration("dedicated", "batch", "NoSchedule"), Toleration("spot")),
    env=(("HTTPS_PROXY", "http://proxy:3128"),),
    broker_image="registry.example.com/rabbitmq:4.1.8",
)
VARIANTS = {
    "job": _all(OPTIONS),
    "job-on-kind": _all(replace(OPTIONS, data_host_path="/data")),
    "job-with-a-broker-cluster": _all(replace(OPTIONS, broker_replicas=3)),
    "job-with-every-option": _all(EVERY_OPTION, azure_credentials=CREDENTIALS),
    "job-with-every-option-and-no-broker": _all(replace(EVERY_OPTION, broker=False)),
    "job-with-azure-and-claim": _all(
        JobOptions(
            queue="temperature_job",
            completions=2,
            data_claim="jobkit-data",
            active_deadline_seconds=600,
        ),
        azure_credentials=CREDENTIALS,
    ),
    # A ScaledJob's jobTargetRef is a JobSpec; the official schemas check it as a Job.
    "scaledjob-target-as-job": [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "target"},
            "spec": render_scaled_job(OPTIONS)[1]["spec"]["jobTargetRef"],
        }
    ],
}


def _by_kind(manifests: list[Manifest], kind: str) -> Manifest:
    (found,) = [manifest for manifest in manifests if manifest["kind"] == kind]
    return found


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_manifest_validates_strictly_against_the_official_schemas(
    variant: str, version: str
) -> None:
    for manifest in VARIANTS[variant]:
        checked = kubernetes_validate.validate(manifest, version, strict=True)
        assert checked == version, manifest["kind"]


def test_the_validation_runs_against_the_two_newest_versions_shipped() -> None:
    assert len(VERSIONS) == 2
    assert _minor(kubernetes_validate.utils.latest_version()) == VERSIONS[-1]


def test_the_pod_failure_policy_is_the_worker_exit_code_table() -> None:
    rules = _by_kind(VARIANTS["job"], "Job")["spec"]["podFailurePolicy"]["rules"]
    by_code = {
        rule["onExitCodes"]["values"][0]: rule["action"] for rule in rules if "onExitCodes" in rule
    }
    assert by_code == {ExitCode.CONFIG: "FailJob", ExitCode.DEAD: "Ignore"}
    assert ExitCode.RETRY not in by_code, "exit 1 counts against the backoff limit"
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]} in rules


def test_the_job_never_restarts_a_container_so_the_policy_sees_every_exit_code() -> None:
    spec = _by_kind(VARIANTS["job"], "Job")["spec"]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    containers = {container["name"] for container in pod["containers"]}
    for rule in spec["podFailurePolicy"]["rules"]:
        if "onExitCodes" in rule:
            assert rule["onExitCodes"]["containerName"] in containers
            assert 0 not in rule["onExitCodes"]["values"]


def test_the_job_has_the_requested_counts_limits_and_image() -> None:
    spec = _by_kind(VARIANTS["job"], "Job")["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (6, 3, 6)
    assert spec["ttlSecondsAfterFinished"] == 3600
    assert "activeDeadlineSeconds" not in spec
    (container,) = spec["template"]["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert (container["image"], container["imagePullPolicy"]) == (
        "jobkit-worker:0.1.0",
        "IfNotPresent",
    )


def test_the_workers_read_the_broker_url_from_the_secret_the_broker_user_comes_from() -> None:
    manifests = VARIANTS["job"]
    secret = _by_kind(manifests, "Secret")
    (container,) = _by_kind(manifests, "Job")["spec"]["template"]["spec"]["containers"]
    env = {variable["name"]: variable for variable in container["env"]}
    reference = env["BROKER_URL"]["valueFrom"]["secretKeyRef"]
    assert secret["metadata"]["name"] == reference["name"]
    assert secret["stringData"][reference["key"]] == CLUSTER_URL
    assert secret["stringData"]["RABBITMQ_DEFAULT_USER"] == "jobkit"
    assert secret["stringData"]["RABBITMQ_DEFAULT_PASS"] == "s3cret"


def _named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def test_rabbitmq_keeps_its_queue_on_a_persistent_volume_behind_a_service_on_5672() -> None:
    manifests = VARIANTS["job"]
    stateful_set = _by_kind(manifests, "StatefulSet")
    service = _named(manifests, "Service", "rabbitmq")
    (claim,) = stateful_set["spec"]["volumeClaimTemplates"]
    (container,) = stateful_set["spec"]["template"]["spec"]["containers"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/var/lib/rabbitmq"} in container[
        "volumeMounts"
    ]
    volumes = stateful_set["spec"]["template"]["spec"]["volumes"]
    assert claim["metadata"]["name"] not in {volume["name"] for volume in volumes}, "no emptyDir"
    assert [port["port"] for port in service["spec"]["ports"]] == [5672]
    assert service["spec"]["selector"] == stateful_set["spec"]["selector"]["matchLabels"]


def test_the_statefulset_names_a_headless_service_of_its_pods() -> None:
    manifests = VARIANTS["job"]
    stateful_set = _by_kind(manifests, "StatefulSet")
    nodes = _named(manifests, "Service", stateful_set["spec"]["serviceName"])
    assert nodes["spec"]["clusterIP"] == "None"
    assert nodes["spec"]["publishNotReadyAddresses"] is True
    assert nodes["spec"]["selector"] == stateful_set["spec"]["selector"]["matchLabels"]


def test_azure_credentials_are_in_the_secret_and_mounted_read_only_where_the_variable_points() -> (
    None
):
    manifests = VARIANTS["job-with-azure-and-claim"]
    secret = _by_kind(manifests, "Secret")
    pod = _by_kind(manifests, "Job")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == AZURE_DIR)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert secret["stringData"][AZURE_KEY] == CREDENTIALS.decode()
    assert mount["readOnly"] is True
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert env["AZURE_CREDENTIALS_PATH"] == f"{AZURE_DIR}/{AZURE_KEY}"
    assert _by_kind(manifests, "Job")["spec"]["activeDeadlineSeconds"] == 600


def test_the_keda_scaled_job_starts_one_single_item_job_per_message_of_the_queue() -> None:
    auth, scaled_job = render_scaled_job(OPTIONS)
    spec = scaled_job["spec"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == "temperature_job"
    assert trigger["metadata"]["mode"] == "QueueLength"
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "host", "name": "jobkit", "key": "BROKER_URL"}
    ]
    assert (spec["jobTargetRef"]["completions"], spec["jobTargetRef"]["parallelism"]) == (1, 1)
    assert spec["maxReplicaCount"] == OPTIONS.parallelism


def test_the_example_manifests_are_what_the_generator_renders(tmp_path: Path) -> None:
    env = {**os.environ, "QUEUE": "temperature_job", "LOG_LEVEL": "INFO"}
    runner = CliRunner()
    base = ["manifests", "--example", "--out", str(tmp_path)]
    for extra in (["--completions", "6"], ["--keda"]):
        result = runner.invoke(app, [*base, *extra], env=env)
        assert result.exit_code == 0, result.output
    for path in sorted(tmp_path.iterdir()):
        example = ROOT / "manifests" / path.name
        assert example.read_text() == path.read_text(), f"run 'make manifests' ({path.name})"


def test_the_manifests_are_yaml_documents_with_a_header(tmp_path: Path) -> None:
    text = (ROOT / "manifests" / "job.yaml").read_text()
    assert text.startswith("# An example: its Secret holds placeholders")
    assert [doc["kind"] for doc in yaml.safe_load_all(text)] == ["Job"]


def test_a_cluster_broker_url_without_a_user_is_refused(env: dict[str, str]) -> None:
    result = jobkit(
        env, "manifests", "--completions", "1", "--cluster-broker-url", "amqp://rabbitmq:5672/"
    )
    assert result.returncode == ExitCode.CONFIG, result.stdout
    assert "needs the form amqp://USER[:PASSWORD]@HOST:5672/%2F" in result.stderr


@pytest.mark.rabbitmq
def test_completions_is_the_live_depth_of_the_queue(
    env: dict[str, str], settings: Settings
) -> None:
    publish_items(settings, ["a.csv", "b.csv", "c.csv", "d.csv"])

    result = jobkit(env, "manifests")

    assert result.returncode == 0, result.stderr
    job = _by_kind(list(yaml.safe_load_all(result.stdout)), "Job")
    assert job["spec"]["completions"] == 4
    env_vars = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "QUEUE", "value": settings.queue} in env_vars


def test_a_draining_job_runs_one_pod_per_parallel_slot_each_draining_the_queue(
    env: dict[str, str],
) -> None:
    result = CliRunner().invoke(app, ["manifests", "--drain", "--parallelism", "4"], env=env)
    assert result.exit_code == 0, result.output
    job = _by_kind(list(yaml.safe_load_all(result.output)), "Job")["spec"]
    assert (job["completions"], job["parallelism"]) == (4, 4)
    (container,) = job["template"]["spec"]["containers"]
    assert container["args"] == ["--drain"]


def test_the_job_gives_its_workers_the_task_chosen(env: dict[str, str]) -> None:
    command = "render-frame {item} {output_dir}"
    result = CliRunner().invoke(
        app, ["manifests", "--completions", "1", "--command", command, "--no-input"], env=env
    )
    assert result.exit_code == 0, result.output
    job = _by_kind(list(yaml.safe_load_all(result.output)), "Job")["spec"]
    (container,) = job["template"]["spec"]["containers"]
    variables = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert variables["TASK_COMMAND"] == command
    assert variables["NO_INPUT"] == "true"
    assert variables["TASK_TIMEOUT_SECONDS"] == "1500"
    assert "TASK" not in variables


def _secret_values(env: dict[str, str], *options: str) -> dict[str, str]:
    result = jobkit(env, "manifests", "--completions", "1", *options)
    assert result.returncode == 0, result.stderr
    return dict(_by_kind(list(yaml.safe_load_all(result.stdout)), "Secret")["stringData"])


def test_each_rendering_makes_a_fresh_random_password_and_cookie_that_the_url_carries(
    env: dict[str, str],
) -> None:
    first, second = _secret_values(env), _secret_values(env)

    for values in (first, second):
        password = values["RABBITMQ_DEFAULT_PASS"]
        assert len(password) >= 24 and password != "jobkit"
        assert values["BROKER_URL"] == f"amqp://jobkit:{password}@rabbitmq:5672/%2F"
        assert len(values["ERLANG_COOKIE"]) >= 32
    assert first["RABBITMQ_DEFAULT_PASS"] != second["RABBITMQ_DEFAULT_PASS"]
    assert first["ERLANG_COOKIE"] != second["ERLANG_COOKIE"]


def test_a_password_given_in_the_url_is_kept(env: dict[str, str]) -> None:
    values = _secret_values(env, "--cluster-broker-url", CLUSTER_URL)
    assert values["RABBITMQ_DEFAULT_PASS"] == "s3cret"


def test_with_an_existing_secret_none_is_rendered_and_every_pod_reads_that_one(
    env: dict[str, str],
) -> None:
    result = jobkit(env, "manifests", "--completions", "1", "--existing-secret", "ours")
    assert result.returncode == 0, result.stderr
    manifests = list(yaml.safe_load_all(result.stdout))

    assert "Secret" not in {manifest["kind"] for manifest in manifests}
    references = {
        source["secretKeyRef"]["name"]
        for manifest in manifests
        for pod in pod_specs(manifest)
        for container in pod["containers"]
        for variable in container.get("env", [])
        if (source := variable.get("valueFrom", {})).get("secretKeyRef")
    }
    assert references == {"ours"}


def test_the_committed_example_secret_holds_placeholders_kubernetes_refuses() -> None:
    (secret,) = yaml.safe_load_all((ROOT / "manifests" / "secret.yaml").read_text())
    assert "stringData" not in secret
    assert set(secret["data"]) >= {"BROKER_URL", "RABBITMQ_DEFAULT_PASS", "ERLANG_COOKIE"}
    for value in secret["data"].values():
        with pytest.raises(binascii.Error):
            base64.b64decode(value, validate=True)  # what the API server does with data


def test_the_yaml_is_plain_every_mapping_its_own_without_anchors_or_aliases() -> None:
    text = dump(VARIANTS["job-with-a-broker-cluster"])
    assert not re.search(r"[&*]id\d+", text), text
    stateful_set = _by_kind(list(yaml.safe_load_all(text)), "StatefulSet")
    stateful_set["metadata"]["labels"]["edited"] = "yes"
    assert "edited" not in stateful_set["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize(
    "variant",
    ["job", "job-with-azure-and-claim", "job-with-a-broker-cluster", "job-with-every-option"],
)
def test_every_pod_meets_pod_security_restricted(variant: str) -> None:
    pods = [pod for manifest in VARIANTS[variant] for pod in pod_specs(manifest)]
    pods += pod_specs(render_scaled_job(OPTIONS)[1])
    assert len(pods) >= 3
    for pod in pods:
        assert violations(pod) == []
        assert pod["automountServiceAccountToken"] is False


def test_the_host_directory_kind_asks_for_is_what_pod_security_refuses() -> None:
    pod = _by_kind(VARIANTS["job-on-kind"], "Job")["spec"]["template"]["spec"]
    assert violations(pod, BASELINE) == ["volume data is a hostPath"]


def test_the_workers_mount_a_shared_claim_by_default_which_is_rendered() -> None:
    manifests = VARIANTS["job"]
    pod = _by_kind(manifests, "Job")["spec"]["template"]["spec"]
    (data,) = [volume for volume in pod["volumes"] if volume["name"] == "data"]
    claim = _by_kind(manifests, "PersistentVolumeClaim")
    assert data["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_three_broker_replicas_form_a_cluster_spread_out_that_a_drain_keeps_a_majority_of() -> None:
    manifests = VARIANTS["job-with-a-broker-cluster"]
    stateful_set = _by_kind(manifests, "StatefulSet")
    pod = stateful_set["spec"]["template"]["spec"]
    config = _by_kind(manifests, "ConfigMap")["data"]
    budget = _by_kind(manifests, "PodDisruptionBudget")

    assert stateful_set["spec"]["replicas"] == 3
    assert "rabbitmq_peer_discovery_k8s" in config["enabled_plugins"]
    assert "cluster_formation.peer_discovery_backend = k8s" in config["rabbitmq.conf"]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == stateful_set["spec"]["selector"]
    env = {variable["name"]: variable for variable in pod["containers"][0]["env"]}
    assert env["RABBITMQ_NODENAME"]["value"].endswith(".rabbitmq-nodes.$(POD_NAMESPACE)")
    assert "PodDisruptionBudget" not in {m["kind"] for m in VARIANTS["job"]}


def test_an_existing_secret_in_the_cluster_is_not_applied_again() -> None:
    manifests = VARIANTS["job"]
    kept = without_secrets(manifests, {"jobkit"})
    assert "Secret" not in {manifest["kind"] for manifest in kept}
    assert len(kept) == len(manifests) - 1
    assert without_secrets(manifests, {"another"}) == manifests


KEDA = Path(os.environ.get("KEDA_CRDS", ROOT.parent / "shared" / "reference" / "keda"))


def _crd_schema(name: str, kind: str) -> dict[str, Any]:
    path = KEDA / name
    if not path.exists():
        pytest.skip(f"KEDA's CRDs are not at {KEDA} (set KEDA_CRDS to their directory)")
    (crd,) = yaml.safe_load_all(path.read_text())
    (served,) = [version for version in crd["spec"]["versions"] if version["served"]]
    assert crd["spec"]["names"]["kind"] == kind
    return dict(served["schema"]["openAPIV3Schema"])


def test_the_scaled_job_and_its_trigger_authentication_validate_against_kedas_crds() -> None:
    auth, scaled_job = render_scaled_job(OPTIONS)
    jsonschema.validate(scaled_job, _crd_schema("keda.sh_scaledjobs.yaml", "ScaledJob"))
    jsonschema.validate(
        auth, _crd_schema("keda.sh_triggerauthentications.yaml", "TriggerAuthentication")
    )
    assert scaled_job["spec"]["scalingStrategy"] == {"strategy": "accurate"}


@pytest.mark.parametrize(
    ("option", "value", "rule"),
    [
        ("--name", "My_Job", "is not a Job name Kubernetes takes"),
        ("--name", "j" * 70, "is not a Job name Kubernetes takes"),
        ("--requests", "lots,plenty", "is not CPU,MEMORY in Kubernetes quantities"),
        ("--limits", "1,2 GB", "is not CPU,MEMORY in Kubernetes quantities"),
        ("--existing-secret", "Bad_Secret", "is not a name Kubernetes takes"),
        ("--namespace", "Batch_NS", "is not a namespace Kubernetes takes"),
        ("--label", "team", "is not KEY=VALUE with a key Kubernetes takes"),
        ("--label", "team=a b", "has a value Kubernetes refuses"),
        ("--annotation", "bad key=x", "is not KEY=VALUE with a key Kubernetes takes"),
        ("--node-selector", "pool=-x", "has a value Kubernetes refuses"),
        ("--toleration", "dedicated=batch:Sometimes", "is not KEY[=VALUE][:EFFECT]"),
        ("--env", "1X=y", "is not NAME=VALUE"),
        ("--service-account", "Worker", "is not a name Kubernetes takes"),
    ],
)
def test_options_kubernetes_would_refuse_are_refused_naming_the_option(
    env: dict[str, str], option: str, value: str, rule: str
) -> None:
    result = jobkit(env, "manifests", "--completions", "1", option, value)

    assert result.returncode == 2, result.stdout
    assert f"{option} {value!r} {rule}" in result.stderr, result.stderr
    assert result.stdout == ""


def test_a_command_is_rendered_so_that_kubernetes_passes_it_on_unexpanded(
    env: dict[str, str],
) -> None:
    command = "sh -c 'echo $(whoami) > {output_dir}/who'"

    result = jobkit(env, "manifests", "--completions", "1", "--command", command)

    assert result.returncode == 0, result.stderr
    job = next(doc for doc in yaml.safe_load_all(result.stdout) if doc and doc["kind"] == "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    values = {item["name"]: item.get("value") for item in container["env"]}
    assert values["TASK_COMMAND"] == "sh -c 'echo $$(whoami) > {output_dir}/who'"


@pytest.mark.rabbitmq
def test_rendering_from_an_empty_or_missing_queue_warns_and_declares_nothing(
    env: dict[str, str],
) -> None:
    result = jobkit(env, "manifests")

    assert result.returncode == 0, result.stderr
    assert "completions: 0" in result.stdout
    assert "warning: queue" in result.stderr and "completions 0" in result.stderr
    connection = pika.BlockingConnection(pika.URLParameters(env["BROKER_URL"]))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        connection.channel().queue_declare(env["QUEUE"], passive=True)
    connection.close()


@pytest.mark.parametrize("password", ["pw/slash", "pw#hash", "pw?query"])
def test_a_cluster_broker_url_is_never_printed_with_its_password(
    env: dict[str, str], password: str
) -> None:
    url = f"amqp://user:{password}@rabbitmq:5672/%2F"

    result = jobkit(env, "manifests", "--completions", "1", "--cluster-broker-url", url)

    assert result.returncode == 2, result.stdout
    assert password not in result.stdout + result.stderr
    assert "amqp://user:***@rabbitmq:5672/%2F" in result.stderr, result.stderr


def test_every_object_is_in_the_namespace_and_the_job_and_its_pods_carry_what_was_asked() -> None:
    manifests = VARIANTS["job-with-every-option"]
    job = _by_kind(manifests, "Job")
    pod = job["spec"]["template"]

    assert {manifest["metadata"]["namespace"] for manifest in manifests} == {"batch"}
    for metadata in (job["metadata"], pod["metadata"]):
        assert metadata["labels"]["kueue.x-k8s.io/queue-name"] == "batch-queue"
        assert metadata["annotations"] == {"example.com/owner": "ops@example.com"}
    assert (pod["spec"]["serviceAccountName"], pod["spec"]["priorityClassName"]) == (
        "jobkit-worker",
        "batch-low",
    )
    assert pod["spec"]["nodeSelector"] == {"pool": "batch"}
    assert pod["spec"]["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists"},
    ]
    env = pod["spec"]["containers"][0]["env"]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in env
    stateful_set = _by_kind(manifests, "StatefulSet")
    assert stateful_set["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example.com/rabbitmq:4.1.8"
    )


def test_the_bundled_rabbitmq_is_pinned_to_a_release() -> None:
    stateful_set = _by_kind(VARIANTS["job"], "StatefulSet")
    image = stateful_set["spec"]["template"]["spec"]["containers"][0]["image"]
    assert re.fullmatch(r"rabbitmq:\d+\.\d+\.\d+", image), image


def test_without_a_broker_the_secret_holds_only_the_url_of_the_cluster_s_own(
    env: dict[str, str], tmp_path: Path
) -> None:
    url = "amqps://jobkit:pw@rabbitmq.messaging.svc:5671/batch"

    result = jobkit(env, "manifests", "--completions", "1", "--no-broker",
                    "--cluster-broker-url", url, "--out", str(tmp_path / "k8s"))  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in (tmp_path / "k8s").iterdir()) == [
        "data.yaml", "job.yaml", "secret.yaml"
    ]  # fmt: skip
    secret = yaml.safe_load((tmp_path / "k8s" / "secret.yaml").read_text())
    assert secret["stringData"] == {"BROKER_URL": url}
    assert (tmp_path / "k8s" / "secret.yaml").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "option", [("--broker-image", "rabbitmq:4.2.0"), ("--broker-replicas", "3")]
)
def test_without_a_broker_the_options_of_the_rendered_one_are_refused(
    env: dict[str, str], option: tuple[str, str]
) -> None:
    result = jobkit(env, "manifests", "--completions", "1", "--no-broker", *option)

    assert result.returncode == 2, result.stdout
    assert "--no-broker renders no RabbitMQ" in result.stderr, result.stderr


def test_without_a_broker_a_url_without_a_password_is_refused(env: dict[str, str]) -> None:
    result = jobkit(env, "manifests", "--completions", "1", "--no-broker",
                    "--cluster-broker-url", "amqp://jobkit@rabbitmq:5672/%2F")  # fmt: skip

    assert result.returncode == 2, result.stdout
    assert "of the cluster's broker (--no-broker)" in result.stderr, result.stderr


def test_an_env_option_may_not_replace_a_variable_the_kit_sets(env: dict[str, str]) -> None:
    result = jobkit(env, "manifests", "--completions", "1", "--env", "QUEUE=other")

    assert result.returncode == 2, result.stdout
    assert "--env QUEUE: the kit sets QUEUE itself" in result.stderr, result.stderr
