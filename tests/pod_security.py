"""Kubernetes' Pod Security Standards, "baseline" and "restricted", as a table of rules applied
to a pod spec: what a namespace labelled pod-security.kubernetes.io/enforce would refuse.

From the standard's page (kubernetes.io/docs/concepts/security/pod-security-standards/), the
rules a pod spec alone can break; each returns the problems it finds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Spec = dict[str, Any]

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip


def _containers(pod: Spec) -> Iterator[Spec]:
    for key in ("containers", "initContainers", "ephemeralContainers"):
        yield from pod.get(key) or []


def _context(container: Spec) -> Spec:
    return container.get("securityContext") or {}


def _host_namespaces(pod: Spec) -> list[str]:
    return [f"{key} is true" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]


def _privileged(pod: Spec) -> list[str]:
    return [
        f"container {c['name']} is privileged"
        for c in _containers(pod)
        if _context(c).get("privileged")
    ]


def _added_capabilities(pod: Spec) -> list[str]:
    problems = []
    for container in _containers(pod):
        added = set((_context(container).get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            problems.append(f"container {container['name']} adds {sorted(added)}")
    return problems


def _host_path(pod: Spec) -> list[str]:
    return [
        f"volume {v['name']} is a hostPath" for v in pod.get("volumes") or [] if "hostPath" in v
    ]


def _host_ports(pod: Spec) -> list[str]:
    return [
        f"container {c['name']} uses hostPort {port['hostPort']}"
        for c in _containers(pod)
        for port in c.get("ports") or []
        if port.get("hostPort")
    ]


def _proc_mount(pod: Spec) -> list[str]:
    return [
        f"container {c['name']} has procMount {_context(c)['procMount']}"
        for c in _containers(pod)
        if _context(c).get("procMount", "Default") != "Default"
    ]


def _unconfined_seccomp(pod: Spec) -> list[str]:
    contexts = [pod.get("securityContext") or {}, *map(_context, _containers(pod))]
    return [
        "a seccomp profile is Unconfined"
        for context in contexts
        if (context.get("seccompProfile") or {}).get("type") == "Unconfined"
    ]


def _sysctls(pod: Spec) -> list[str]:
    sysctls = (pod.get("securityContext") or {}).get("sysctls") or []
    return [f"sysctl {s['name']} is not safe" for s in sysctls if s["name"] not in SAFE_SYSCTLS]


def _volume_types(pod: Spec) -> list[str]:
    problems = []
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']} is of type {sorted(kinds)}")
    return problems


def _privilege_escalation(pod: Spec) -> list[str]:
    return [
        f"container {c['name']} does not set allowPrivilegeEscalation: false"
        for c in _containers(pod)
        if _context(c).get("allowPrivilegeEscalation") is not False
    ]


def _non_root(pod: Spec) -> list[str]:
    pod_context = pod.get("securityContext") or {}
    problems = []
    for container in _containers(pod):
        context = _context(container)
        if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            problems.append(f"container {container['name']} may run as root (runAsNonRoot)")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            problems.append(f"container {container['name']} runs as user 0")
    return problems


def _seccomp(pod: Spec) -> list[str]:
    pod_profile = ((pod.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    problems = []
    for container in _containers(pod):
        profile = (_context(container).get("seccompProfile") or {}).get("type", pod_profile)
        if profile not in ("RuntimeDefault", "Localhost"):
            problems.append(f"container {container['name']} has no RuntimeDefault seccomp profile")
    return problems


def _capabilities(pod: Spec) -> list[str]:
    problems = []
    for container in _containers(pod):
        capabilities = _context(container).get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"container {container['name']} does not drop ALL capabilities")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"container {container['name']} adds capabilities")
    return problems


BASELINE: list[Callable[[Spec], list[str]]] = [
    _host_namespaces, _privileged, _added_capabilities, _host_path, _host_ports, _proc_mount,
    _unconfined_seccomp, _sysctls,
]  # fmt: skip
RESTRICTED = [
    *BASELINE, _volume_types, _privilege_escalation, _non_root, _seccomp, _capabilities,
]  # fmt: skip


def violations(pod: Spec, rules: list[Callable[[Spec], list[str]]] = RESTRICTED) -> list[str]:
    """Every problem the rules find in the pod spec `pod`."""
    return [problem for rule in rules for problem in rule(pod)]


def pod_specs(manifest: Spec) -> list[Spec]:
    """The pod specs a manifest makes: a Job's, a StatefulSet's, a ScaledJob's Jobs'."""
    spec = manifest.get("spec") or {}
    if manifest["kind"] == "ScaledJob":
        spec = spec["jobTargetRef"]
    template = spec.get("template")
    return [template["spec"]] if template else []
