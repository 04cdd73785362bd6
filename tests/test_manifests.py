"""`jobkit manifests`: valid Kubernetes objects that say what the worker's contract says."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from conftest import ROOT, jobkit
from typer.testing import CliRunner

from publisher.cli.app import app
from publisher.kube.manifests import (
    AZURE_DIR,
    AZURE_KEY,
    JobOptions,
    Manifest,
    render_files,
    render_scaled_job,
)
from publisher.queue.publish import publish_items
from worker.errors import ExitCode
from worker.settings import Settings

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


OPTIONS = JobOptions(queue="temperature_job", completions=6, data_host_path="/data")
VARIANTS = {
    "job": _all(OPTIONS),
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


def test_rabbitmq_keeps_its_queue_on_a_persistent_volume_behind_a_service_on_5672() -> None:
    manifests = VARIANTS["job"]
    stateful_set = _by_kind(manifests, "StatefulSet")
    service = _by_kind(manifests, "Service")
    (claim,) = stateful_set["spec"]["volumeClaimTemplates"]
    (container,) = stateful_set["spec"]["template"]["spec"]["containers"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/var/lib/rabbitmq"} in container[
        "volumeMounts"
    ]
    assert "volumes" not in stateful_set["spec"]["template"]["spec"], "no emptyDir"
    assert [port["port"] for port in service["spec"]["ports"]] == [5672]
    assert service["spec"]["selector"] == stateful_set["spec"]["selector"]["matchLabels"]


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
    base = ["manifests", "--data-host-path", "/data", "--out", str(tmp_path)]
    for extra in (["--completions", "6"], ["--keda"]):
        result = runner.invoke(app, [*base, *extra], env=env)
        assert result.exit_code == 0, result.output
    for path in sorted(tmp_path.iterdir()):
        example = ROOT / "manifests" / path.name
        assert example.read_text() == path.read_text(), f"run 'make manifests' ({path.name})"


def test_the_manifests_are_yaml_documents_with_a_header(tmp_path: Path) -> None:
    text = (ROOT / "manifests" / "job.yaml").read_text()
    assert text.startswith("# Rendered by 'jobkit manifests'")
    assert [doc["kind"] for doc in yaml.safe_load_all(text)] == ["Job"]


def test_a_cluster_broker_url_without_a_password_is_refused(env: dict[str, str]) -> None:
    result = jobkit(
        env, "manifests", "--completions", "1", "--cluster-broker-url", "amqp://rabbitmq:5672/"
    )
    assert result.returncode == ExitCode.CONFIG, result.stdout
    assert "needs the form amqp://USER:PASSWORD@HOST:5672/%2F" in result.stderr


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
