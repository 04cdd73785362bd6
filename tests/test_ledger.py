"""Every item has its own results: outputs that cannot replace each other or an input, a ledger
that checks what it claims, and copies of an item done once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pika
import pytest
from conftest import ROOT, dead_letter_reasons, jobkit, settled_depths, status_counts

from jobkit_publisher.cli.exits import CommandExit
from jobkit_publisher.run.record import load_run, run_record_name
from jobkit_worker.builtin.aggregate import aggregate_csv
from jobkit_worker.errors import ExitCode

pytestmark = pytest.mark.rabbitmq

WORDCOUNT = f"{sys.executable} {ROOT / 'examples' / 'wordcount' / 'wordcount.py'}"


def _csv(*readings: tuple[str, float]) -> str:
    return "Datetime,Temperature\n" + "".join(f"{when},{value}\n" for when, value in readings)


def _write(env: dict[str, str], files: dict[str, str], where: str = "INPUT_URL") -> None:
    for name, content in files.items():
        path = Path(env[where], name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def test_items_whose_results_would_share_a_name_keep_the_first_and_dead_letter_the_others(
    env: dict[str, str],
) -> None:
    files = {
        "x.csv": _csv(("2017-12-01 00:00:00", 1.0)),
        "x.CSV": _csv(("2017-12-01 00:00:00", 2.0)),
        "x": _csv(("2017-12-01 00:00:00", 3.0)),
        "x.tsv": _csv(("2017-12-01 00:00:00", 4.0)),
    }
    _write(env, files)
    assert jobkit(env, "publish", *files).returncode == 0

    run = jobkit(env, "run", "--parallelism", "1")

    assert run.returncode == ExitCode.DEAD, run.stdout
    result = Path(env["OUTPUT_URL"], "x_aggregated.csv").read_bytes()
    assert result == aggregate_csv(files["x.csv"].encode())
    reasons = dead_letter_reasons(env["BROKER_URL"], env["QUEUE"])
    assert len(reasons) == 3, reasons
    for name, reason in zip(["x.CSV", "x", "x.tsv"], reasons, strict=True):
        assert reason.startswith(f"{name}: its output x_aggregated.csv is item x.csv's already")
    counts = status_counts(env)
    assert (counts["done"], counts["dead_lettered"], counts["adds_up"]) == (1, 3, True)


def test_a_programs_outputs_land_beside_their_item_so_same_named_items_keep_their_own(
    env: dict[str, str],
) -> None:
    _write(env, {"a/x.csv": "one two\n", "b/x.csv": "one two three four\n"})
    assert jobkit(env, "publish", "a/x.csv", "b/x.csv").returncode == 0

    run = jobkit(
        env, "run", "--parallelism", "2", "--command", f"{WORDCOUNT} {{input}} {{output_dir}}"
    )

    assert run.returncode == 0, run.stdout + run.stderr
    for name, words in (("a", 2), ("b", 4)):
        counts = json.loads(Path(env["OUTPUT_URL"], name, "x.csv.counts.json").read_text())
        assert counts["words"] == words
    assert not Path(env["OUTPUT_URL"], "x.csv.counts.json").exists()


def test_a_second_item_whose_program_writes_the_same_file_is_refused_before_anything_is_replaced(
    env: dict[str, str], tmp_path: Path
) -> None:
    program = tmp_path / "r.py"
    program.write_text(
        "import sys, pathlib\n"
        "pathlib.Path(sys.argv[2], 'r.txt').write_text(pathlib.Path(sys.argv[1]).read_text())\n"
    )
    _write(env, {"first.txt": "first\n", "second.txt": "second\n"})
    assert jobkit(env, "publish", "first.txt", "second.txt").returncode == 0

    run = jobkit(
        env,
        "run",
        "--parallelism",
        "1",
        "--command",
        f"{sys.executable} {program} {{input}} {{output_dir}}",
    )

    assert run.returncode == ExitCode.DEAD, run.stdout
    assert Path(env["OUTPUT_URL"], "r.txt").read_text() == "first\n"
    (reason,) = dead_letter_reasons(env["BROKER_URL"], env["QUEUE"])
    assert reason.startswith("second.txt: its output r.txt is item first.txt's already"), reason


def test_with_inputs_and_outputs_in_one_place_a_result_never_replaces_an_input(
    env: dict[str, str],
) -> None:
    shared = {**env, "OUTPUT_URL": env["INPUT_URL"]}
    kept = _csv(("2017-12-01 00:00:00", 9.0))
    _write(shared, {"x.csv": _csv(("2017-12-01 00:00:00", 1.0)), "x_aggregated.csv": kept})

    published = jobkit(shared, "publish")
    run = jobkit(shared, "run", "--parallelism", "1")

    assert "Left out 1 entry, named as results are (*_aggregated.csv" in published.stderr
    assert "x_aggregated.csv" in published.stderr, published.stderr
    assert run.returncode == ExitCode.DEAD, run.stdout
    assert Path(env["INPUT_URL"], "x_aggregated.csv").read_text() == kept
    (reason,) = dead_letter_reasons(env["BROKER_URL"], env["QUEUE"])
    assert "x.csv: its output x_aggregated.csv would replace a file the kit did not write" in reason


def test_publish_names_every_file_it_leaves_out_and_why(
    env: dict[str, str], tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "y.csv").write_text(_csv(("2017-12-01 00:00:00", 1.0)))
    Path(env["INPUT_URL"], "linked").symlink_to(outside)
    _write(env, {"a.csv": _csv(("2017-12-01 00:00:00", 1.0)), "B.CSV": "x", "notes.txt": "x"})

    published = jobkit(env, "publish")

    assert published.returncode == 0, published.stderr
    assert "Published 1 item" in published.stdout
    assert "Left out 2 entries, not named *.csv: B.CSV, notes.txt." in published.stderr
    assert "Left out 1 entry, a link to a directory, which is not followed: linked." in (
        published.stderr
    ), published.stderr


def test_status_says_which_items_are_no_longer_done_when_their_outputs_changed_or_are_shared(
    env: dict[str, str],
) -> None:
    files = {name: _csv(("2017-12-01 00:00:00", 1.0)) for name in ("a.csv", "b.csv", "c.csv")}
    _write(env, files)
    assert jobkit(env, "publish", *files).returncode == 0
    assert jobkit(env, "run", "--parallelism", "2").returncode == 0
    out = Path(env["OUTPUT_URL"])
    (out / "a_aggregated.csv").write_text("changed by hand\n")
    record = json.loads((out / "c.csv.done.json").read_text())  # as an older kit let happen:
    record["outputs"] = {"b_aggregated.csv": json.loads((out / "b.csv.done.json").read_text())[
        "outputs"]["b_aggregated.csv"]}  # fmt: skip
    (out / "c.csv.done.json").write_text(json.dumps(record))

    status = jobkit(env, "status")

    assert status.returncode == CommandExit.UNACCOUNTED, status.stderr
    assert "Not all accounted for: 3 published, 0 done" in status.stdout, status.stdout
    assert "a.csv: its output a_aggregated.csv changed after it was stored" in status.stdout
    assert "b.csv: its output b_aggregated.csv is also c.csv's" in status.stdout
    assert "c.csv: its output b_aggregated.csv is also b.csv's" in status.stdout
    assert "'jobkit publish' does them again" in status.stdout
    assert "All accounted for" not in status.stdout
    counts = status_counts(env)
    assert sorted(counts["no_longer_done"]) == ["a.csv", "b.csv", "c.csv"]  # type: ignore[arg-type]


def test_a_copy_of_an_item_already_done_is_acked_without_doing_it_again(
    env: dict[str, str],
) -> None:
    _write(env, {"a.csv": _csv(("2017-12-01 00:00:00", 1.0))})
    assert jobkit(env, "publish", "a.csv").returncode == 0
    connection = pika.BlockingConnection(pika.URLParameters(env["BROKER_URL"]))
    connection.channel().basic_publish("", env["QUEUE"], b"a.csv")  # a copy, as a tool may send
    connection.close()

    run = jobkit(env, "run", "--parallelism", "1", "--json")

    assert run.returncode == 0, run.stdout
    report = json.loads(run.stdout)
    assert (report["done"], report["already_done"]) == (["a.csv"], ["a.csv"])
    assert report["reconciliation"]["adds_up"] is True
    attempts = load_run(Path(".jobkit", run_record_name(env["QUEUE"]))).attempts  # type: ignore[union-attr]
    assert [attempt.outcome for attempt in attempts] == ["done", "already_done"]
    assert "not redone" in attempts[1].reason
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (0, 0)) == (0, 0)


def test_publish_force_has_an_item_done_again_even_though_it_is_done(
    env: dict[str, str],
) -> None:
    _write(env, {"a.csv": _csv(("2017-12-01 00:00:00", 1.0))})
    assert jobkit(env, "publish", "a.csv").returncode == 0
    assert jobkit(env, "run", "--parallelism", "1").returncode == 0
    record = Path(env["OUTPUT_URL"], "a.csv.done.json")
    first = json.loads(record.read_text())["finished_at"]

    assert jobkit(env, "publish", "--force", "a.csv").returncode == 0
    run = jobkit(env, "run", "--parallelism", "1", "--json")

    assert json.loads(run.stdout)["done"] == ["a.csv"], run.stdout
    assert json.loads(record.read_text())["finished_at"] != first
