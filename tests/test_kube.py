"""`jobkit run --kube`: reading kubectl's JSON, counting pods like the local runner, dry runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import jobkit, settled_depths

from jobkit_publisher.kube.runner import (
    PodResult,
    describe_stop,
    job_status,
    pod_results,
    record_pod,
)
from jobkit_publisher.run.outcome import JobReport
from jobkit_worker.errors import ExitCode
from jobkit_worker.outcome import Outcome, Verdict

KUBECTL = Path(__file__).resolve().parent / "kubectl"


def _document(name: str) -> dict[str, Any]:
    """A document as `kubectl get ... -o json` prints it."""
    parsed: dict[str, Any] = json.loads((KUBECTL / name).read_text())
    return parsed


def _without_kubectl(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """`env` with a PATH that has no kubectl (the test runs jobkit by its full path)."""
    (tmp_path / "empty").mkdir()
    return {**env, "PATH": str(tmp_path / "empty")}


def test_a_running_job_is_not_finished_and_shows_its_counts() -> None:
    status = job_status(_document("job-running.json"))
    assert (status.active, status.succeeded, status.failed) == (3, 2, 0)
    assert status.finished == ""


def test_a_complete_job_is_finished_only_by_its_complete_condition() -> None:
    status = job_status(_document("job-complete.json"))
    assert (status.finished, status.succeeded) == ("Complete", 6)
    assert status.reason == "CompletionsReached"


def test_a_job_failed_by_the_exit_2_rule_reads_as_a_configuration_error() -> None:
    status = job_status(_document("job-failed.json"))
    assert (status.finished, status.reason) == ("Failed", "PodFailurePolicy")
    report = JobReport(completions=6, parallelism=3, backoff_limit=6)
    report.stop(*describe_stop(status))
    assert report.exit_code == ExitCode.CONFIG
    assert "failed with exit code 2 matching FailJob rule" in report.stopped


def test_pods_are_read_with_their_worker_exit_codes_and_waiting_reasons() -> None:
    pods = pod_results(_document("pods.json"))
    assert [(pod.name, pod.phase, pod.exit_code, pod.reason) for pod in pods] == [
        ("jobkit-4q9zt", "Succeeded", 0, "Completed"),
        ("jobkit-8d2mw", "Failed", 3, "Error"),
        ("jobkit-c5v7r", "Failed", 137, "OOMKilled"),
        ("jobkit-x2lqp", "Pending", None, "ImagePullBackOff"),
    ]
    assert [pod.ended for pod in pods] == [True, True, True, False]


def test_ended_pods_count_in_the_report_as_the_local_runner_counts_workers() -> None:
    done, dead, oom, _ = pod_results(_document("pods.json"))
    report = JobReport(completions=6, parallelism=3, backoff_limit=6)

    record_pod(report, done, [Outcome(Verdict.DONE, "temperature1.csv")])
    record_pod(report, dead, [Outcome(Verdict.DEAD, "bad.csv", "bad.csv: line 2: ...")])
    record_pod(report, oom, [])

    assert report.done == ["temperature1.csv"]
    assert report.dead == [("bad.csv", "bad.csv: line 2: ...")]
    assert report.failures == [("", "pod jobkit-c5v7r: worker exited with code 137 (OOMKilled)")]
    assert report.exit_code == ExitCode.DEAD


def test_a_pod_that_exits_2_stops_the_report_as_a_configuration_error() -> None:
    report = JobReport(completions=1, parallelism=1, backoff_limit=6)
    record_pod(
        report,
        PodResult("jobkit-a", "Failed", 2, "Error"),
        [Outcome(Verdict.CONFIG, None, "Bad config.")],
    )
    assert report.exit_code == ExitCode.CONFIG
    assert report.stopped == "configuration error: Bad config."


@pytest.mark.rabbitmq
def test_a_dry_run_prints_the_manifests_without_kubectl_and_masks_secrets(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = jobkit(
        _without_kubectl(env, tmp_path),
        "run",
        "--kube",
        "--dry-run",
        "--completions",
        "2",
        "--cluster-broker-url",
        "amqp://jobkit:s3cret@rabbitmq:5672/%2F",
    )

    assert result.returncode == 0, result.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(result.stdout)]
    assert kinds == [
        "ConfigMap", "Service", "Service", "StatefulSet", "Secret", "PersistentVolumeClaim", "Job",
    ]  # fmt: skip
    assert "s3cret" not in result.stdout
    assert "amqp://jobkit:***@rabbitmq:5672/%2F" in result.stdout


@pytest.mark.rabbitmq
def test_run_kube_without_kubectl_says_how_to_get_it_and_takes_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert jobkit(env, "publish", "a.csv").returncode == 0

    result = jobkit(_without_kubectl(env, tmp_path), "run", "--kube")

    assert result.returncode == ExitCode.CONFIG, result.stdout
    assert "'kubectl' is not on PATH; install kubectl" in result.stderr, result.stderr
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (1, 0)) == (1, 0)


# A kubectl that answers from files: JOB for 'get job NAME -o json', PODS for 'get pods', LOGS for
# 'logs'; nothing exists before 'apply'. HANG makes 'get job' hang, as a wedged API server does.
FAKE_KUBECTL = """#!/bin/sh
echo "$*" >> "$CALLS"
case "$*" in
  apply*) cat > /dev/null ;;
  *ignore-not-found*) ;;
  "get job "*) [ -n "$HANG" ] && exec sleep 600; cat "$JOB" ;;
  "get pods "*) cat "$PODS" ;;
  logs*) cat "$LOGS" ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
"""


def _fake_kubectl(
    env: dict[str, str], tmp_path: Path, job: str, pods: object, logs: str
) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(FAKE_KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    (tmp_path / "job.json").write_text(job)
    (tmp_path / "pods.json").write_text(json.dumps(pods))
    (tmp_path / "logs").write_text(logs)
    return {
        **env,
        "PATH": f"{bin_dir}:{env['PATH']}",
        "JOB": str(tmp_path / "job.json"),
        "PODS": str(tmp_path / "pods.json"),
        "LOGS": str(tmp_path / "logs"),
        "CALLS": str(tmp_path / "calls"),
        "NO_INPUT": "true",
    }


def _pod(name: str, code: int) -> dict[str, Any]:
    terminated = {"exitCode": code, "reason": "Completed"}
    return {
        "metadata": {"name": name},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{"name": "worker", "state": {"terminated": terminated}}],
        },
    }


COMPLETE = (KUBECTL / "job-complete.json").read_text()


@pytest.mark.rabbitmq
def test_a_job_complete_with_items_still_queued_is_not_a_success(
    env: dict[str, str], tmp_path: Path
) -> None:
    names = "\n".join(f"item-{n}" for n in range(6))
    assert (
        jobkit({**env, "NO_INPUT": "true"}, "publish", "--from", "-", stdin=names).returncode == 0
    )
    fake = _fake_kubectl(env, tmp_path, COMPLETE, {"items": []}, "")

    result = jobkit(fake, "run", "--kube")

    assert result.returncode == ExitCode.RETRY, result.stdout + result.stderr
    assert "ended with 6 items still queued" in result.stdout, result.stdout


@pytest.mark.rabbitmq
def test_every_outcome_a_draining_pod_printed_is_counted(
    env: dict[str, str], tmp_path: Path
) -> None:
    logs = "\n".join(Outcome(Verdict.DONE, f"item-{n:02}").to_json() for n in range(10))
    pods = {"items": [_pod("jobkit-a", 0), _pod("jobkit-b", 0)]}
    fake = _fake_kubectl(env, tmp_path, COMPLETE, pods, logs + "\n")

    result = jobkit(fake, "run", "--kube", "--json")

    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["done"]) == 20


@pytest.mark.rabbitmq
@pytest.mark.parametrize("job", ["", "not json", "[1, 2]"], ids=["empty", "garbage", "a list"])
def test_kubectl_printing_no_json_object_is_one_line_and_exit_2(
    env: dict[str, str], tmp_path: Path, job: str
) -> None:
    fake = _fake_kubectl(env, tmp_path, job, {"items": []}, "")

    result = jobkit(fake, "run", "--kube", "--completions", "1")

    assert result.returncode == ExitCode.CONFIG, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "did not print a JSON object" in line, line


@pytest.mark.rabbitmq
def test_a_kubectl_that_does_not_answer_is_said_while_it_waits(
    env: dict[str, str], tmp_path: Path
) -> None:
    fake = {**_fake_kubectl(env, tmp_path, COMPLETE, {"items": []}, ""), "HANG": "1"}
    run = subprocess.Popen(
        [str(Path(sys.executable).parent / "jobkit"), "run", "--kube", "--completions", "1"],
        env=fake, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert run.stderr is not None
    said = [run.stderr.readline()]  # within the first KUBECTL_SAY_SECONDS
    while said[-1] and "has not answered" not in said[-1]:
        said.append(run.stderr.readline())
    run.send_signal(signal.SIGINT)
    try:
        said.append(run.communicate(timeout=60)[1])
    except subprocess.TimeoutExpired:
        run.kill()
        said.append(f"(still running 60 s after SIGINT) {run.communicate()[1]}")

    assert "has not answered for 10 s" in said[-2], said
    assert run.returncode == 130, said


@pytest.mark.rabbitmq
def test_a_job_run_in_a_namespace_is_applied_and_followed_there_by_every_kubectl_call(
    env: dict[str, str], tmp_path: Path
) -> None:
    fake = _fake_kubectl(env, tmp_path, COMPLETE, {"items": []}, "")

    result = jobkit(fake, "run", "--kube", "--completions", "0", "--namespace", "batch")

    assert result.returncode == 0, result.stdout + result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls and all(call.endswith(" --namespace batch") for call in calls), calls
