"""The kit as a user installs it: the built wheel in a fresh virtualenv, used from a directory of
the user's own, whose files must not take the kit's place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

BIN = Path(sys.executable).parent
# What a user's directory may hold: job-wq-1's own example ships a worker.py.
SHADOWS = ("worker", "publisher", "bench", "pika", "numpy", "pyarrow")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [str(BIN / "uv"), "build", "--wheel", "--out-dir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(out.glob("*.whl"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv holding the wheel with its report extra, and nothing else."""
    venv = tmp_path_factory.mktemp("venv")
    uv = str(BIN / "uv")
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(venv / "bin/python"), f"{wheel}[report]"],
        check=True,
        timeout=600,
    )
    yield venv / "bin"


def test_the_wheel_installs_only_the_kit_s_own_import_names(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist() if ".dist-info" not in name}
    assert tops == {"jobkit_worker", "jobkit_publisher"}


@pytest.mark.slow
@pytest.mark.rabbitmq
def test_a_batch_runs_from_a_directory_whose_files_share_the_kit_s_names(
    installed: Path, env: dict[str, str], tmp_path: Path
) -> None:
    for name in SHADOWS:
        (tmp_path / f"{name}.py").write_text(f"raise SystemExit('the user's {name}.py ran')\n")
    user = {**env, "PATH": f"{installed}{os.pathsep}{os.environ['PATH']}"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(installed / args[0]), *args[1:]],
            env=user,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )

    for command in (
        ("jobkit", "data", "--files", "3", "--rows", "1440", "--out", env["INPUT_URL"]),
        ("jobkit", "publish"),
        ("jobkit", "run", "--parallelism", "2", "--json", "--report"),
    ):
        result = run(*command)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    assert len(json.loads(result.stdout)["done"]) == 3
    assert len(list(Path(env["OUTPUT_URL"]).glob("*_aggregated.csv"))) == 3
    assert (tmp_path / ".jobkit" / "report.html").stat().st_size > 0
    empty = run("jobkit-worker")
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout)["outcome"] == "empty"


def test_the_installed_kit_imports_neither_pandas_nor_the_development_tools(
    installed: Path, tmp_path: Path
) -> None:
    for absent in ("pandas", "pytest", "mypy", "bench"):
        probe = subprocess.run(
            [str(installed / "python"), "-c", f"import {absent}"], cwd=tmp_path, capture_output=True
        )
        assert probe.returncode != 0, f"{absent} is installed with the kit"


def test_the_sdist_holds_the_tests_with_their_helpers_and_what_they_run(tmp_path: Path) -> None:
    subprocess.run(
        [str(BIN / "uv"), "build", "--sdist", "--out-dir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    with tarfile.open(next(tmp_path.glob("*.tar.gz"))) as archive:
        archive.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.glob("amqp_jobkit-*/")
    for path in ("LICENSE", "Makefile", "images/worker.Dockerfile", "manifests/job.yaml",
                 "examples/wordcount/wordcount.py", "scripts/ensure-broker", "docs"):  # fmt: skip
        assert (unpacked / path).exists(), path

    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=unpacked,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
    assert "test_install.py::" in collected.stdout
