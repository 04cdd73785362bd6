"""The Kubernetes runner: apply the manifests with kubectl and follow the Job to its end."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobkit_publisher.kube.manifests import CONTAINER, JobOptions
from jobkit_publisher.kube.objects import Manifest, dump
from jobkit_publisher.run.outcome import JobReport
from jobkit_worker.broker import Session, dead_queue_name
from jobkit_worker.errors import ConfigError, ExitCode
from jobkit_worker.outcome import Outcome, Verdict
from jobkit_worker.settings import Settings

POLL_SECONDS = 2.0
KUBECTL_SAY_SECONDS = 10.0  # a kubectl call that takes longer is said while it goes on
KUBECTL_TIMEOUT_SECONDS = 120.0
log = logging.getLogger(__name__)
# A pod waiting for one of these will not start by itself: following the Job further is futile.
STUCK_REASONS = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
}


@dataclass(frozen=True)
class JobStatus:
    """The counts and the final condition of a Job, as `kubectl get job -o json` shows them."""

    active: int = 0
    succeeded: int = 0
    failed: int = 0
    finished: str = ""  # "Complete" or "Failed" once the Job has ended
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class PodResult:
    """One worker pod: its phase and, once it ended, the worker container's exit code."""

    name: str
    phase: str
    exit_code: int | None = None
    reason: str = ""  # why it ended (Completed, Error, OOMKilled) or waits (ImagePullBackOff)
    message: str = ""

    @property
    def ended(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def job_status(job: dict[str, Any]) -> JobStatus:
    """Read a Job document's status; `finished` stays empty until Complete or Failed is True."""
    status = job.get("status") or {}
    finished = reason = message = ""
    for condition in status.get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            finished = condition["type"]
            reason = condition.get("reason", "")
            message = condition.get("message", "")
    return JobStatus(
        active=int(status.get("active", 0)),
        succeeded=int(status.get("succeeded", 0)),
        failed=int(status.get("failed", 0)),
        finished=finished,
        reason=reason,
        message=message,
    )


def pod_results(pods: dict[str, Any]) -> list[PodResult]:
    """Read a pod list document (`kubectl get pods -o json`): one result per pod, by name."""
    results = []
    for pod in pods.get("items") or []:
        status = pod.get("status") or {}
        state: dict[str, Any] = {}
        for container in status.get("containerStatuses") or []:
            if container.get("name") == CONTAINER:
                state = container.get("state") or {}
        terminated = state.get("terminated") or {}
        waiting = state.get("waiting") or {}
        detail = terminated or waiting
        results.append(
            PodResult(
                name=pod["metadata"]["name"],
                phase=status.get("phase", "Unknown"),
                exit_code=terminated.get("exitCode"),
                reason=detail.get("reason", status.get("reason", "")),
                message=detail.get("message", status.get("message", "")),
            )
        )
    return sorted(results, key=lambda result: result.name)


def record_pod(report: JobReport, pod: PodResult, outcomes: list[Outcome]) -> None:
    """Count an ended pod in the report, as the local runner counts a worker process: each
    outcome it printed, or its exit code when it printed none."""
    if not outcomes:
        report.count(Verdict.of_exit(pod.exit_code), "", _describe(pod))
    for outcome in outcomes:
        report.count(outcome.verdict, outcome.item or "", outcome.reason or _describe(pod))


def without_secrets(manifests: list[Manifest], names: set[str]) -> list[Manifest]:
    """`manifests` without the Secrets named: an existing Secret is kept, since RabbitMQ set its
    user's password from it when it first started, and a new one would lock the workers out."""
    return [
        doc for doc in manifests if doc["kind"] != "Secret" or doc["metadata"]["name"] not in names
    ]


def describe_stop(status: JobStatus) -> tuple[ExitCode, str]:
    """Why a Failed Job stopped, and the run's exit code: 2 for a configuration error."""
    text = f"{status.reason}: {status.message}".strip(": ")
    if status.reason == "PodFailurePolicy":
        return ExitCode.CONFIG, f"configuration error: {text}"
    if status.reason == "BackoffLimitExceeded":
        return ExitCode.RETRY, f"backoff limit reached ({text})"
    return ExitCode.RETRY, f"the Job failed ({text})"


def _describe(pod: PodResult) -> str:
    if pod.exit_code is None:
        return f"pod {pod.name} {pod.phase.lower()} without an exit code ({pod.reason})"
    return f"pod {pod.name}: worker exited with code {pod.exit_code} ({pod.reason})"


class Kubectl:
    """kubectl against the current context; every failure is a one-line ConfigError, and a
    kubectl that does not answer is said while it waits."""

    def __init__(self, binary: str = "kubectl", namespace: str | None = None) -> None:
        self.binary = binary
        self.namespace = namespace

    def run(self, *args: str, stdin: str | None = None) -> str:
        """Run `kubectl ARGS` and return its stdout; raises ConfigError with its stderr."""
        path = shutil.which(self.binary)
        if path is None:
            raise ConfigError(
                f"{self.binary!r} is not on PATH; install kubectl and select a cluster "
                "(kubectl config use-context NAME), or use --dry-run."
            )
        command = f"kubectl {' '.join(args[:3])}"
        where = ("--namespace", self.namespace) if self.namespace else ()
        with subprocess.Popen(
            [path, *args, *where],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            try:
                out, err = process.communicate(stdin, timeout=KUBECTL_SAY_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning(
                    "'%s' has not answered for %g s; waiting up to %g s in all.",
                    command, KUBECTL_SAY_SECONDS, KUBECTL_TIMEOUT_SECONDS,
                )  # fmt: skip
                try:
                    out, err = process.communicate(
                        timeout=KUBECTL_TIMEOUT_SECONDS - KUBECTL_SAY_SECONDS
                    )
                except subprocess.TimeoutExpired:
                    raise ConfigError(
                        f"'{command}' did not answer in {KUBECTL_TIMEOUT_SECONDS:g} s; check the "
                        "cluster ('kubectl cluster-info')."
                    ) from None
            finally:  # a kubectl given up on, or the wait interrupted, is not left running
                if process.returncode is None:
                    process.kill()
        if process.returncode != 0:
            first = (err.strip().splitlines() or ["no message"])[0]
            raise ConfigError(f"'{command}' failed: {first}")
        return out

    def get(self, *args: str) -> dict[str, Any]:
        """`kubectl get ARGS -o json`, parsed; ConfigError when it is not a JSON object."""
        text = self.run("get", *args, "-o", "json")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ConfigError(
                f"'kubectl get {' '.join(args[:2])} -o json' did not print a JSON object "
                f"({text.strip()[:60]!r})."
            )
        return parsed


class KubeRunner:
    """Apply the manifests and follow the Job until Complete or Failed, reporting like `run`."""

    def __init__(
        self,
        settings: Settings,
        options: JobOptions,
        manifests: list[Manifest],
        kubectl: Kubectl | None = None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.settings = settings
        self.options = options
        self.manifests = manifests
        self.kubectl = kubectl or Kubectl(namespace=options.namespace)
        self.poll_seconds = poll_seconds
        self._seen: set[str] = set()

    def run(self, on_progress: Callable[[JobReport], None] = lambda report: None) -> JobReport:
        """Apply, follow to the end, then read the queue; raises ConfigError, BrokerUnavailable."""
        started = time.monotonic()
        options = self.options
        report = JobReport(options.completions, options.parallelism, options.backoff_limit)
        dead_queue = dead_queue_name(self.settings.queue)
        with Session(self.settings, "kube-runner") as session:
            report.queued = session.declare(self.settings.queue)
            report.dead_letters_before = session.depth(dead_queue)
            self._replace_finished_job()
            kept = self._existing_secrets()
            self.kubectl.run("apply", "-f", "-", stdin=dump(without_secrets(self.manifests, kept)))
            while not self._poll(report, session):
                on_progress(report)
                session.serve(self.poll_seconds)
            report.queued = session.depth(self.settings.queue)
            report.running = 0
            if report.queued:
                report.stop(
                    ExitCode.RETRY,
                    f"Job {options.name!r} ended with {report.queued} items still queued; "
                    "run it again to do them",
                )
            on_progress(report)
            report.dead_letters_after = session.depth(dead_queue)
        report.seconds = time.monotonic() - started
        return report

    def _existing_secrets(self) -> set[str]:
        """The Secrets to be applied that the cluster has already."""
        names = {doc["metadata"]["name"] for doc in self.manifests if doc["kind"] == "Secret"}
        return {
            name
            for name in names
            if self.kubectl.run("get", "secret", name, "--ignore-not-found", "-o", "name").strip()
        }

    def _replace_finished_job(self) -> None:
        """A Job's pod template cannot change: delete a finished one of the same name first."""
        name = self.options.name
        found = self.kubectl.run("get", "job", name, "--ignore-not-found", "-o", "json")
        if not found.strip():
            return
        if not job_status(json.loads(found)).finished:
            raise ConfigError(
                f"Job {name!r} is still running; wait for it, or delete it with "
                f"'kubectl delete job {name}' (its items go back to the queue)."
            )
        self.kubectl.run("delete", "job", name, "--wait=true")

    def _poll(self, report: JobReport, session: Session) -> bool:
        """Update the report from the cluster and the queue; True once the Job has ended."""
        status = job_status(self.kubectl.get("job", self.options.name))
        pods = pod_results(self.kubectl.get("pods", "-l", f"job-name={self.options.name}"))
        for pod in pods:
            if pod.ended and pod.name not in self._seen:
                self._seen.add(pod.name)
                record_pod(report, pod, self._outcomes(pod))
            elif pod.reason in STUCK_REASONS:
                report.stop(
                    ExitCode.CONFIG,
                    f"configuration error: pod {pod.name} cannot start ({pod.reason}: "
                    f"{pod.message})",
                )
        report.running = status.active
        report.queued = session.depth(self.settings.queue)
        if status.finished == "Failed":
            report.stop(*describe_stop(status))
        return bool(status.finished) or report.stop_code == ExitCode.CONFIG

    def _outcomes(self, pod: PodResult) -> list[Outcome]:
        """The worker's outcome lines from the pod's log (one per item a draining worker did),
        or none when it cannot be read."""
        try:
            logs = self.kubectl.run("logs", pod.name, "-c", CONTAINER)
        except ConfigError:
            return []
        return [outcome for line in logs.splitlines() if (outcome := Outcome.from_json(line))]
