"""What every rendered Kubernetes object shares: its type, the kit's labels, and the YAML."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

Manifest = dict[str, Any]

MINIMUM_KUBERNETES = "# Needs Kubernetes 1.26 or later (the Job's podFailurePolicy).\n"
HEADER = "# Rendered by 'jobkit manifests'; edit the options, not this file.\n" + MINIMUM_KUBERNETES
_PART_OF = {"app.kubernetes.io/part-of": "amqp-jobkit"}


def labels(component: str) -> dict[str, str]:
    """A fresh copy of the labels of one part of the kit (`broker`, `worker`, `config`)."""
    return {**_PART_OF, "app.kubernetes.io/name": f"jobkit-{component}"}


def dump(manifests: list[Manifest], header: str = HEADER) -> str:
    """The manifests as one YAML stream of plain mappings, keys in the order written here.

    No anchors and aliases: a mapping used twice (labels and selector) is written out twice,
    so editing one in the file never edits the other. Text of several lines is a block.
    """
    import yaml  # only when writing: most commands never do, and it costs 20 ms to import

    class PlainDumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
        # A file's content (rabbitmq.conf) as a block, line by line, as one would write it.
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    PlainDumper.add_representer(str, text)

    return header + yaml.dump_all(
        manifests, Dumper=PlainDumper, sort_keys=False, explicit_start=True
    )


def write_manifests(
    out_dir: Path, files: dict[str, list[Manifest]], header: str = HEADER
) -> list[Path]:
    """Write each file's manifests to `out_dir/<file>`; returns the paths written. A file that
    holds a Secret is readable by its owner alone, from its first byte."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, manifests in files.items():
        path = out_dir / file_name
        secret = any(manifest["kind"] == "Secret" for manifest in manifests)
        path.unlink(missing_ok=True)  # a file there before would keep its mode
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o666)
        with os.fdopen(descriptor, "w") as file:
            file.write(dump(manifests, header))
        paths.append(path)
    return paths
