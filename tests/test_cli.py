"""The command line: help everywhere, examples, and the small commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, jobkit, settled_depths
from typer.main import get_command
from typer.testing import CliRunner

from jobkit_publisher.cli.app import app
from jobkit_publisher.cli.exits import CommandExit
from jobkit_worker.builtin.aggregate import aggregate_csv
from jobkit_worker.errors import ExitCode


def _command_paths(group: Any, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every command and subcommand, as the words a user types after 'jobkit' (a group is
    whatever has commands: typer's own click is not the installed one)."""
    paths = []
    for name, command in sorted(group.commands.items()):
        paths.append(" ".join((*prefix, name)))
        if hasattr(command, "commands"):
            paths += _command_paths(command, (*prefix, name))
    return paths


COMMANDS = _command_paths(get_command(app))


def test_jobkit_has_exactly_its_commands_and_lists_them_without_arguments() -> None:
    expected = {
        "publish", "depth", "status", "purge", "data", "upload", "manifests", "run", "report",
        "plot", "dead", "dead list", "dead requeue",
    }  # fmt: skip
    result = CliRunner().invoke(app, [])

    assert set(COMMANDS) == expected
    section = result.output.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    listed = {line.split()[0] for line in section.splitlines()}
    assert {command for command in expected if " " not in command} <= listed, result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_ending_with_an_example(command: str) -> None:
    result = CliRunner().invoke(app, [*command.split(), "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"Example: jobkit {command}" in result.output, result.output


def test_the_worker_help_lists_the_variables_and_exit_codes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jobkit_worker", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for word in ["BROKER_URL", "QUEUE", "INPUT_URL", "OUTPUT_URL", "Exit codes:", "  3  "]:
        assert word in result.stdout, result.stdout


def test_sample_data_is_deterministic(tmp_path: Path) -> None:
    for directory, seed in [("a", "1"), ("b", "1"), ("c", "2")]:
        result = CliRunner().invoke(
            app, ["data", "--out", str(tmp_path / directory), "--rows", "20000", "--seed", seed]
        )
        assert result.exit_code == 0, result.output
    first = (tmp_path / "a/temperature3.csv").read_bytes()
    assert first == (tmp_path / "b/temperature3.csv").read_bytes()
    assert first != (tmp_path / "c/temperature3.csv").read_bytes()
    assert first.startswith(b"Datetime,Temperature\n2017-12-01 00:00:00,")
    names = [path.name for path in (tmp_path / "a").iterdir()]
    assert sorted(name for name in names if not name.startswith(".")) == [
        f"temperature{i}.csv" for i in range(1, 7)
    ]
    lines = first.decode().splitlines()
    assert len(lines) - 1 < 20000, "some readings are left out (gaps)"
    assert any(line.endswith(",") for line in lines), "some values are missing"


def test_publish_with_nothing_to_publish_says_where_it_looked(env: dict[str, str]) -> None:
    result = jobkit(env, "publish")
    assert result.returncode == 2
    assert f"No *.csv files under INPUT_URL '{env['INPUT_URL']}'" in result.stderr


def test_publish_refuses_unsafe_names(env: dict[str, str]) -> None:
    result = jobkit(env, "publish", "../secrets.csv")
    assert result.returncode == ExitCode.DEAD
    assert "must be a relative path of file names, without '..'" in result.stderr


@pytest.mark.rabbitmq
def test_purge_asks_first_and_empties_the_queue_with_yes(env: dict[str, str]) -> None:
    assert jobkit(env, "publish", "a.csv", "b.csv").returncode == 0
    declined = subprocess.run(
        [str(Path(sys.executable).parent / "jobkit"), "purge"],
        env=env,
        input="n\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert declined.returncode != 0
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (2, 0)) == (2, 0)

    result = jobkit(env, "purge", "--yes")

    assert result.returncode == 0, result.stderr
    assert "Purged 2 messages" in result.stdout
    assert jobkit(env, "depth").stdout.strip() == "0"


def test_data_writes_only_files_the_aggregation_takes(tmp_path: Path) -> None:
    env = {**os.environ, "MAX_SPAN_HOURS": "2", "INPUT_URL": str(tmp_path)}

    refused = jobkit(env, "data", "--files", "1", "--rows", "121")
    written = jobkit(env, "data", "--files", "1", "--rows", "120")

    assert refused.returncode == ExitCode.CONFIG, refused.stdout + refused.stderr
    assert "--rows 121 would span 3 hours, more than MAX_SPAN_HOURS (2)" in refused.stderr
    assert written.returncode == 0, written.stderr
    data = (tmp_path / "temperature1.csv").read_bytes()
    assert aggregate_csv(data, "temperature1.csv", max_span_hours=2).count(b"\n") == 3


@pytest.fixture
def silent_broker() -> Any:
    """A port that accepts TCP connections and never says a word of AMQP, as a paused node or
    a wedged port-forward does."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # connections complete in the backlog; none is ever read
        yield f"amqp://guest:guest@127.0.0.1:{listener.getsockname()[1]}/?stack_timeout=2"


@pytest.mark.parametrize(
    "command",
    [("depth",), ("status",), ("report",), ("publish", "a.csv"), ("run",), ("worker",)],
    ids=lambda words: " ".join(words),
)
def test_a_broker_that_never_answers_amqp_is_retried_then_one_line(
    env: dict[str, str], silent_broker: str, command: tuple[str, ...]
) -> None:
    silent = {**env, "BROKER_URL": silent_broker, "BROKER_RETRY_SECONDS": "3", "NO_INPUT": "true"}
    if command == ("worker",):
        result = subprocess.run(
            [sys.executable, "-m", "jobkit_worker"], env=silent, capture_output=True, text=True,
            timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    else:
        result = jobkit(silent, *command, timeout=60)

    assert result.returncode == ExitCode.CONFIG, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "then no AMQP" in errors[0] and "retrying" in result.stderr, result.stderr


def test_ctrl_c_in_a_command_is_said_with_exit_130(env: dict[str, str], silent_broker: str) -> None:
    waiting = {**env, "BROKER_URL": silent_broker, "BROKER_RETRY_SECONDS": "60"}
    status = subprocess.Popen(
        [str(Path(sys.executable).parent / "jobkit"), "status"],
        env=waiting, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert status.stderr is not None
    for line in status.stderr:
        if "retrying" in line:  # the command is under way
            status.send_signal(signal.SIGINT)
            break
    _, said = status.communicate(timeout=60)

    assert status.returncode == 130, said
    assert said.strip() == "Interrupted.", said


def test_version_names_the_installed_distribution_s_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    result = jobkit(dict(os.environ), "--version")

    assert (result.returncode, result.stdout) == (0, f"jobkit {project['version']}\n")


def test_the_top_level_help_lists_jobkit_s_exit_codes_and_not_the_worker_s() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)

    assert "Exit codes of jobkit" in result.output, result.output
    assert "4  not all accounted for" in result.output, result.output
    assert "the item is done and acked" not in result.output, result.output


@pytest.mark.rabbitmq
def test_status_exits_by_what_is_left_to_do(env: dict[str, str]) -> None:
    Path(env["INPUT_URL"], "a.csv").write_bytes(b"Datetime,Temperature\n2017-12-01 00:00:00,4\n")
    assert jobkit(env, "publish").returncode == 0

    queued = jobkit(env, "status")
    assert jobkit(env, "run").returncode == 0
    done = jobkit(env, "status")
    Path(env["OUTPUT_URL"], "a.csv.done.json").unlink()
    lost = jobkit(env, "status")

    assert queued.returncode == CommandExit.UNFINISHED, queued.stdout
    assert done.returncode == CommandExit.DONE, done.stdout
    assert lost.returncode == CommandExit.UNACCOUNTED, lost.stdout
    assert "Not all accounted for" in lost.stdout, lost.stdout


@pytest.mark.rabbitmq
def test_every_json_document_names_its_schema_version(env: dict[str, str]) -> None:
    Path(env["INPUT_URL"], "a.csv").write_bytes(b"Datetime,Temperature\n2017-12-01 00:00:00,4\n")
    for command in (("publish",), ("run",), ("status",), ("dead", "list")):
        result = jobkit(env, *command, "--json")

        assert json.loads(result.stdout)["schema"] == 1, (command, result.stdout)


def test_shell_completion_completes_the_commands(tmp_path: Path) -> None:
    completing = {
        **os.environ,
        "_JOBKIT_COMPLETE": "complete_bash",
        "COMP_WORDS": "jobkit pu",
        "COMP_CWORD": "1",
    }

    result = jobkit(completing)
    script = jobkit(dict(os.environ), "--show-completion", "bash")

    assert set(result.stdout.split()) == {"publish", "purge"}, result.stdout + result.stderr
    assert "complete -o default -F _jobkit_completion jobkit" in script.stdout, script.stdout


@pytest.mark.parametrize(
    ("where", "hint"),
    [
        ("make", "'make data'"),
        ("path", "'jobkit data'"),
        ("venv", f"'{Path(sys.executable).parent / 'jobkit'} data'"),
    ],
)
def test_the_hint_for_sample_data_names_a_command_that_works_where_the_user_stands(
    env: dict[str, str], where: str, hint: str
) -> None:
    bin_dir = str(Path(sys.executable).parent)
    plain = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != bin_dir)
    shell = {name: value for name, value in env.items() if name != "MAKELEVEL"}
    stands = {
        "make": {**shell, "MAKELEVEL": "1"},
        "path": {**shell, "PATH": f"{bin_dir}{os.pathsep}{plain}"},
        "venv": {**shell, "PATH": plain},
    }[where]

    result = jobkit(stands, "publish")

    assert result.returncode == CommandExit.CONFIG, result.stderr
    assert f"make samples with {hint} or set INPUT_URL" in result.stderr, result.stderr
