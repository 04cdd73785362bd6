"""The images: their Dockerfiles lint clean, and their install steps give a working worker."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT

from jobkit_publisher.data.samples import sample_csv
from jobkit_worker.builtin.aggregate import aggregate_csv

BIN = Path(sys.executable).parent
IMAGES = ROOT / "images"
WORKER_DOCKERFILE = (IMAGES / "worker.Dockerfile").read_text()


def _requirements() -> list[str]:
    lines = (IMAGES / "worker-requirements.txt").read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize("dockerfile", ["worker.Dockerfile", "amqp-consume.Dockerfile"])
def test_the_dockerfile_passes_hadolint(dockerfile: str) -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), str(IMAGES / dockerfile)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_base_image_is_pinned_by_digest_and_each_image_carries_oci_labels() -> None:
    for dockerfile in IMAGES.glob("*.Dockerfile"):
        text = dockerfile.read_text()
        bases = re.findall(r"^ARG BASE=(\S+)$", text, re.M)
        assert all("@sha256:" in base for base in bases), dockerfile.name
        for label in ("title", "description", "version", "licenses"):
            assert f"org.opencontainers.image.{label}=" in text, (dockerfile.name, label)


def test_the_worker_image_has_every_dependency_of_the_kit_but_the_publisher_s() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    publisher_only = ("typer", "rich", "pyyaml")
    wanted = {name for name in project["dependencies"] if not name.startswith(publisher_only)}
    assert set(_requirements()) == wanted, "keep images/worker-requirements.txt in step"


@pytest.mark.slow
def test_the_image_install_steps_give_a_worker_that_runs_alone(tmp_path: Path) -> None:
    prefix = tmp_path / "image"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([str(IMAGES / "install-worker"), str(prefix)], env=env, check=True, timeout=300)
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()  # a worker never makes its output location
    data = sample_csv(2_000, seed=0, index=1)
    (tmp_path / "in" / "temperature1.csv").write_bytes(data)
    run_env = {
        "PATH": f"{prefix / 'bin'}{os.pathsep}/usr/bin:/bin",
        "INPUT_URL": str(tmp_path / "in"),
        "OUTPUT_URL": str(tmp_path / "out"),
    }

    for shadow in ("worker", "jobkit_worker", "pika", "numpy"):  # what a mounted cwd may hold
        (tmp_path / f"{shadow}.py").write_text("raise SystemExit('imported from the cwd')\n")
    entrypoint = json.loads(re.findall(r"^ENTRYPOINT (.*)$", WORKER_DOCKERFILE, re.M)[-1])

    # The image's PATH puts this virtualenv first.
    result = subprocess.run(
        [*entrypoint, "--stdin"],
        input=b"temperature1.csv",
        env=run_env,
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout.decode().splitlines()[-1])["outcome"] == "done"
    assert (tmp_path / "out" / "temperature1_aggregated.csv").read_bytes() == aggregate_csv(data)
    pip = subprocess.run(["python", "-m", "pip", "--version"], env=run_env, capture_output=True)
    assert str(prefix) in pip.stdout.decode(), "an image FROM this one installs with its pip"
    for absent in ("jobkit_publisher", "typer", "rich", "pandas", "matplotlib"):
        probe = subprocess.run(
            ["python", "-c", f"import {absent}"], env=run_env, cwd=tmp_path, capture_output=True
        )
        assert probe.returncode != 0, f"{absent} should not be in the worker image"


def test_the_kind_workflow_is_a_valid_github_workflow() -> None:
    result = subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            str(ROOT / ".github/workflows/kind.yml"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kind_workflow_uses_only_targets_the_makefile_has() -> None:
    makefile = (ROOT / "Makefile").read_text()
    workflow = (ROOT / ".github/workflows/kind.yml").read_text()
    for line in workflow.splitlines():
        if "run: make " in line:
            for target in line.split("run: make ", 1)[1].split():
                assert f"\n{target}:" in makefile, target
