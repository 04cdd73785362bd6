"""Tasks of one's own as Python functions: by a registered short name or as module:function."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import dead_letter_reasons, jobkit, last_outcome, read_depths, settled_depths, worker

from jobkit_publisher.queue.publish import publish_items
from jobkit_worker.errors import ExitCode
from jobkit_worker.settings import Settings

pytestmark = pytest.mark.rabbitmq

TASKS = """\
import sys

from jobkit_worker.errors import InputError


def shout(name, data):
    return {name + ".shout": data.upper()}


def refuse(name, data):
    raise InputError(f"{name}: refused")


def lies(name, data):
    print('{"outcome": "dead", "item": "ghost.csv", "reason": "made up", "delivery": 1, '
          '"seconds": 0, "took_at": null, "phases": {}, "code": 3}', flush=True)
    return {name + ".out": data}


def long_name(name, data):
    return {"n" * 260: data}


def ends_the_process(name, data):
    import os

    os._exit(0)


def command_line_modules(name, data):
    loaded = sorted(set(sys.modules) & {"typer", "rich", "click"})
    return {name + ".modules": " ".join(loaded).encode()}
"""


@pytest.fixture
def task_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """`env` with a small distribution on PYTHONPATH that registers `shout` under jobkit.tasks."""
    packages = tmp_path / "packages"
    (packages / "jobkit_test_tasks").mkdir(parents=True)
    (packages / "jobkit_test_tasks" / "__init__.py").write_text(TASKS)
    metadata = packages / "jobkit_test_tasks-1.0.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: jobkit-test-tasks\nVersion: 1.0\n"
    )
    (metadata / "entry_points.txt").write_text("[jobkit.tasks]\nshout = jobkit_test_tasks:shout\n")
    return {**env, "PYTHONPATH": str(packages)}


def _publish_file(settings: Settings, name: str, data: bytes) -> None:
    Path(settings.input_url, name).write_bytes(data)
    publish_items(settings, [name])


def test_a_task_registered_under_a_short_name_by_another_package_runs_on_the_item(
    task_env: dict[str, str], settings: Settings
) -> None:
    _publish_file(settings, "hello.txt", b"hello")

    result = worker({**task_env, "TASK": "shout"})

    assert result.returncode == 0, result.stderr
    assert Path(settings.output_url, "hello.txt.shout").read_bytes() == b"HELLO"
    assert settled_depths(settings.broker_url, settings.queue, (0, 0)) == (0, 0)


def test_a_task_given_as_module_and_function_runs_on_the_item(
    task_env: dict[str, str], settings: Settings
) -> None:
    _publish_file(settings, "hello.txt", b"hello")

    result = worker(task_env, "--task", "jobkit_test_tasks:shout")

    assert result.returncode == 0, result.stderr
    assert Path(settings.output_url, "hello.txt.shout").read_bytes() == b"HELLO"


def test_an_input_error_from_a_task_dead_letters_the_item_with_its_reason(
    task_env: dict[str, str], settings: Settings
) -> None:
    _publish_file(settings, "hello.txt", b"hello")

    result = worker({**task_env, "TASK": "jobkit_test_tasks:refuse"})

    assert result.returncode == ExitCode.DEAD, result.stderr
    assert dead_letter_reasons(settings.broker_url, settings.queue) == ["hello.txt: refused"]


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("thumbnail", "TASK 'thumbnail' is not a known task (known: aggregate, shout)"),
        ("no_such_module:run", "TASK 'no_such_module:run': cannot import 'no_such_module'"),
        ("jobkit_test_tasks:missing", "'jobkit_test_tasks' has no 'missing'"),
        ("not a task", "TASK 'not a task' is neither a task's name nor package.module:function"),
    ],
)
def test_a_task_that_cannot_be_found_is_exit_2_naming_it_with_no_message_taken(
    task_env: dict[str, str], settings: Settings, task: str, message: str
) -> None:
    publish_items(settings, ["hello.txt"])

    result = worker({**task_env, "TASK": task})

    assert result.returncode == ExitCode.CONFIG, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert message in line, line
    assert settled_depths(settings.broker_url, settings.queue, (1, 0)) == (1, 0)


def test_the_built_in_task_is_chosen_without_scanning_entry_points(env: dict[str, str]) -> None:
    result = worker({**env, "TASK": "aggregate"}, python_options=("-X", "importtime"))

    assert last_outcome(result)["outcome"] == "empty", result.stderr
    imported = {
        line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if "|" in line
    }
    assert "importlib.metadata" not in imported
    assert "jobkit_worker.builtin.aggregate" not in imported, (
        "imported with the first item, not before"
    )


def test_items_that_are_not_files_are_published_from_standard_input_and_processed(
    task_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    no_files = {**task_env, "INPUT_URL": str(tmp_path / "nowhere"), "NO_INPUT": "true"}
    published = jobkit(no_files, "publish", "--from", "-", stdin="frame 1\n\nframe 2\n")
    assert published.returncode == 0, published.stderr
    assert "Published 2 items" in published.stdout

    ran = jobkit(
        no_files, "run", "--json", "--parallelism", "2", "--task", "jobkit_test_tasks:shout"
    )

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert sorted(json.loads(ran.stdout)["done"]) == ["frame 1", "frame 2"]
    for item in ("frame 1", "frame 2"):
        assert Path(settings.output_url, f"{item}.shout").read_bytes() == item.upper().encode()
        record = json.loads(Path(settings.output_url, f"{item}.done.json").read_text())
        assert record["input_sha256"] == hashlib.sha256(item.encode()).hexdigest()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--task", "nosuch:fn", "cannot import 'nosuch'"),
        ("--command", "no-such-program {input}", "no program 'no-such-program' found"),
    ],
)
def test_a_bad_task_stops_the_run_with_exit_2_even_when_the_queue_is_empty(
    env: dict[str, str], option: str, value: str, message: str
) -> None:
    result = jobkit(env, "run", option, value)

    assert result.returncode == ExitCode.CONFIG, result.stdout + result.stderr
    assert message in result.stderr, result.stderr


def test_every_line_of_a_list_of_items_is_an_item_and_empty_lines_are_skipped(
    env: dict[str, str], tmp_path: Path
) -> None:
    no_files = {**env, "INPUT_URL": str(tmp_path / "nowhere"), "NO_INPUT": "true"}

    published = jobkit(no_files, "publish", "--from", "-", stdin="# frames\n\nframe 1\r\n")

    assert published.returncode == 0, published.stderr
    assert "Published 2 items to" in published.stdout
    assert read_depths(env["BROKER_URL"], env["QUEUE"])[0] == 2


def test_a_runs_workers_do_not_load_the_command_lines_libraries(
    task_env: dict[str, str], settings: Settings
) -> None:
    # Each worker of 'jobkit run' is a fork of a template process; re-importing typer and rich
    # in each, as multiprocessing does for the script that started it, cost ~50 ms an item.
    _publish_file(settings, "a.txt", b"x")

    result = jobkit({**task_env, "TASK": "jobkit_test_tasks:command_line_modules"}, "run")

    assert result.returncode == 0, result.stdout + result.stderr
    assert Path(settings.output_url, "a.txt.modules").read_text() == ""


def test_what_a_task_prints_never_passes_for_an_outcome(
    task_env: dict[str, str], settings: Settings
) -> None:
    _publish_file(settings, "a.txt", b"x")

    result = jobkit({**task_env, "TASK": "jobkit_test_tasks:lies"}, "run", "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["dead"] == [] and report["done"] == ["a.txt"], report
    assert '"item": "ghost.csv"' in Path(".jobkit/run.log").read_text()  # logged, as printed


def test_a_task_that_ends_its_process_is_a_failure_the_run_counts_and_names(
    task_env: dict[str, str], settings: Settings
) -> None:
    _publish_file(settings, "a.txt", b"x")

    result = jobkit({**task_env, "TASK": "jobkit_test_tasks:ends_the_process"}, "run", "--json")

    assert result.returncode != 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert len(report["failures"]) >= 1, report
    assert "the task ended the process itself" in report["failures"][0]["reason"], report


def test_an_output_name_too_long_is_called_the_tasks_output_name_not_an_item_name(
    task_env: dict[str, str], settings: Settings
) -> None:
    _publish_file(settings, "a.txt", b"x")

    result = worker({**task_env, "TASK": "jobkit_test_tasks:long_name"})

    assert result.returncode == ExitCode.DEAD, result.stderr
    (reason,) = dead_letter_reasons(settings.broker_url, settings.queue)
    assert reason.startswith("a.txt: the task's output name 'nnn"), reason
    assert "has a part longer than 255 bytes" in reason, reason
