"""Hostile and odd input: nothing read or written outside its place, no secret printed, no
name read as markup, one clear line for a bad setting, and items that can never succeed
dead-lettered at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pika
import pytest
from conftest import dead_letter_reasons, declare, jobkit, last_outcome, settled_depths, worker

from jobkit_publisher.queue.publish import publish_items
from jobkit_worker.errors import ExitCode, StorageError
from jobkit_worker.settings import Settings
from jobkit_worker.storage.local import LocalStore

GOOD = "Datetime,Temperature\n2017-12-01 00:00:00,4.5\n"


def _publish_raw(env: dict[str, str], body: bytes) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(env["BROKER_URL"]))
    channel = connection.channel()
    channel.queue_declare(env["QUEUE"], passive=True)
    channel.basic_publish("", env["QUEUE"], body)
    connection.close()


@pytest.mark.rabbitmq
def test_a_link_out_of_the_input_location_is_dead_lettered_and_its_target_never_quoted(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("Datetime,Temperature\nhunter2-is-the-password,1\n")
    Path(env["INPUT_URL"], "passwd.csv").symlink_to("/etc/passwd")
    Path(env["INPUT_URL"], "outside.csv").symlink_to(secret)
    publish_items(settings, ["passwd.csv", "outside.csv"])

    run = jobkit(env, "run", "--parallelism", "1")

    assert run.returncode == ExitCode.DEAD, run.stdout
    reasons = dead_letter_reasons(env["BROKER_URL"], env["QUEUE"])
    assert [reason.split(":")[0] for reason in reasons] == ["passwd.csv", "outside.csv"]
    assert all("symbolic link on its way leads outside" in reason for reason in reasons)
    everything = run.stdout + run.stderr + Path(".jobkit/run.log").read_text() + "".join(reasons)
    assert "root:" not in everything and "hunter2" not in everything
    assert not list(Path(env["OUTPUT_URL"]).glob("*_aggregated.csv"))


@pytest.mark.rabbitmq
def test_a_link_that_stays_inside_the_input_location_is_followed(
    env: dict[str, str], settings: Settings
) -> None:
    Path(env["INPUT_URL"], "real.csv").write_text(GOOD)
    Path(env["INPUT_URL"], "alias.csv").symlink_to("real.csv")
    publish_items(settings, ["alias.csv"])

    result = worker(env)

    assert result.returncode == ExitCode.DONE, result.stderr
    assert Path(env["OUTPUT_URL"], "alias_aggregated.csv").exists()


@pytest.mark.rabbitmq
def test_a_linked_directory_in_the_output_location_is_not_written_through(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Path(env["OUTPUT_URL"], "sub").symlink_to(elsewhere)
    Path(env["INPUT_URL"], "sub").mkdir()
    Path(env["INPUT_URL"], "sub", "a.csv").write_text(GOOD)
    publish_items(settings, ["sub/a.csv"])

    result = worker(env)

    assert result.returncode == ExitCode.DEAD, result.stderr
    assert list(elsewhere.iterdir()) == []
    (reason,) = dead_letter_reasons(env["BROKER_URL"], env["QUEUE"])
    assert "symbolic link on its way leads outside" in reason, reason


def test_a_deleted_output_directory_is_not_made_again_by_a_write(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "out")
    (tmp_path / "out").mkdir()
    store.write("a.csv", b"first")
    for path in sorted((tmp_path / "out").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (tmp_path / "out").rmdir()

    with pytest.raises(StorageError, match="is gone"):
        store.write("b.csv", b"second")
    assert not (tmp_path / "out").exists()


def test_a_file_that_changes_while_it_is_read_is_not_taken_as_read(tmp_path: Path) -> None:
    path = tmp_path / "growing.csv"
    path.write_bytes(b"x" * 50_000_000)
    stop = threading.Event()

    def grow() -> None:
        with path.open("ab") as file:
            while not stop.is_set():
                file.write(b"2017-12-01 00:00:00,18.7\n")
                file.flush()

    writer = threading.Thread(target=grow)
    writer.start()
    try:
        with pytest.raises(StorageError, match="changed while it was read"):
            for _ in range(20):
                LocalStore(tmp_path).read("growing.csv")
    finally:
        stop.set()
        writer.join()


@pytest.mark.rabbitmq
def test_a_program_gets_none_of_the_kits_credentials(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    Path(env["INPUT_URL"], "a.txt").write_text("a")
    publish_items(settings, ["a.txt"])
    program = f"{sys.executable} -c \"import json, os, sys; open(sys.argv[1] + '/env.json', 'w').write(json.dumps(dict(os.environ)))\" {{output_dir}}"  # noqa: E501
    secrets = {"AZURE_STORAGE_CONNECTION_STRING": "AccountKey=s3cret", "AZURE_CLIENT_SECRET": "x"}

    result = worker({**env, **secrets, "TASK_COMMAND": program, "KEEP_ME": "yes"})

    assert result.returncode == ExitCode.DONE, result.stderr
    seen = json.loads(Path(env["OUTPUT_URL"], "env.json").read_text())
    assert seen["KEEP_ME"] == "yes"
    for name in ("BROKER_URL", "QUEUE", "OUTPUT_URL", *secrets):
        assert name not in seen, name


@pytest.mark.rabbitmq
@pytest.mark.parametrize(
    "name",
    ["x.csv/", "./x.csv", "a//x.csv", "a/./x.csv", "n" * 300 + ".csv", "é" * 135 + ".csv"],
)
def test_names_no_store_can_keep_are_refused_by_publish_and_dead_lettered_at_once(
    env: dict[str, str], name: str
) -> None:
    refused = jobkit(env, "publish", name)
    declare(env)
    _publish_raw(env, name.encode())

    result = worker(env)

    assert refused.returncode == ExitCode.DEAD, refused.stderr
    assert "Not published: Item name" in refused.stderr, refused.stderr
    assert result.returncode == ExitCode.DEAD, result.stderr
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (0, 1)) == (0, 1)
    made = [path.name for path in Path(env["OUTPUT_URL"]).iterdir() if path.name != ".jobkit"]
    assert made == [], "nothing was made in the output"


@pytest.mark.rabbitmq
def test_a_megabyte_body_is_dead_lettered_at_once_and_quoted_short(env: dict[str, str]) -> None:
    declare(env)
    _publish_raw(env, b"y" * 1_000_000)

    result = worker(env)

    assert result.returncode == ExitCode.DEAD, result.stderr[:2000]
    assert len(result.stdout) + len(result.stderr) < 20_000
    (reason,) = dead_letter_reasons(env["BROKER_URL"], env["QUEUE"])
    assert reason.startswith("The message body is 1,000,000 bytes, more than an item's name")


def _depth_and_worker(
    env: dict[str, str], broker_url: str
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """`jobkit depth` and one worker, both given BROKER_URL `broker_url`."""
    bad = {**env, "BROKER_URL": broker_url}
    return jobkit(bad, "depth"), worker(bad)


@pytest.mark.parametrize("password", ["pw/slash", "pw#hash", "pw?query"])
def test_a_password_holding_url_delimiters_is_never_printed(
    env: dict[str, str], password: str
) -> None:
    depth, result = _depth_and_worker(env, f"amqp://user:{password}@127.0.0.1:5672/%2F")

    assert depth.returncode == result.returncode == ExitCode.CONFIG
    for text in (depth.stdout, depth.stderr, result.stdout, result.stderr):
        assert password not in text, text
    assert "amqp://user:***@127.0.0.1:5672/%2F" in depth.stderr, depth.stderr
    assert "percent-encode" in depth.stderr
    assert password not in str(last_outcome(result))


@pytest.mark.parametrize("option", ["heartbeat=abc", "channel_max=x", "ssl_options=zz"])
def test_a_broker_option_pika_cannot_use_is_one_line_and_exit_2(
    env: dict[str, str], option: str
) -> None:
    depth, result = _depth_and_worker(env, f"{env['BROKER_URL']}?{option}")

    assert depth.returncode == result.returncode == ExitCode.CONFIG, depth.stderr
    assert len(depth.stderr.strip().splitlines()) == 1, depth.stderr
    assert "has an option pika cannot use" in depth.stderr
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.rabbitmq
def test_names_with_markup_and_emoji_codes_are_printed_as_they_are(
    env: dict[str, str], settings: Settings
) -> None:
    names = ["site:x:1.csv", "[bold]b.csv"]
    for name in names:
        Path(env["INPUT_URL"], name).write_text("not a csv")
    publish_items(settings, names)
    assert jobkit(env, "run", "--parallelism", "1").returncode == ExitCode.DEAD

    status = jobkit({**env, "COLUMNS": "200"}, "status")
    dead = jobkit(env, "dead", "list", "--json")

    for name in names:
        assert name in status.stdout, status.stdout
    assert [letter["item"] for letter in json.loads(dead.stdout)["dead_letters"]] == names
    assert "❌" not in status.stdout


def test_the_scan_for_stale_temporaries_survives_a_file_removed_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobkit_worker import scratch

    (tmp_path / "otherhost~123~ab12~x").write_text("")
    listed = os.listdir

    def listed_then_removed(path: Path) -> list[str]:
        entries = listed(path)
        (tmp_path / "otherhost~123~ab12~x").unlink()  # another pod removed it meanwhile
        return entries

    monkeypatch.setattr(scratch.os, "listdir", listed_then_removed)

    scratch.remove_stale(tmp_path)  # no exception


@pytest.mark.rabbitmq
def test_each_line_piped_in_is_a_name_exactly_as_written_and_a_bad_one_is_named(
    env: dict[str, str],
) -> None:
    for name in ("#hash.csv", "plain.csv", " lead.csv"):
        Path(env["INPUT_URL"], name).write_text("x")
    listing = subprocess.run(
        ["ls", env["INPUT_URL"]], capture_output=True, check=True, env={"LC_ALL": "C"}
    ).stdout.decode()

    published = jobkit(env, "publish", "--json", "--from", "-", stdin=listing + "\n")

    assert published.returncode == ExitCode.DEAD, published.stdout + published.stderr
    assert json.loads(published.stdout)["confirmed"] == 2
    assert "Not published: Item name ' lead.csv'" in published.stderr, published.stderr
    assert "1 item not published" in published.stderr, published.stderr
    status = json.loads(jobkit(env, "status", "--json").stdout)["reconciliation"]
    assert sorted(status["outstanding"]) == ["#hash.csv", "plain.csv"], status


@pytest.mark.rabbitmq
def test_publishing_a_directory_names_every_bad_name_at_once_and_publishes_the_rest(
    env: dict[str, str],
) -> None:
    root = os.fsencode(env["INPUT_URL"])
    for name in (b"caf\xe9.csv", b" lead.csv", b"good.csv", b"x\xc2\x85y.csv"):
        Path(os.fsdecode(root + b"/" + name)).write_text("x")

    published = jobkit(env, "publish")

    assert published.returncode == ExitCode.DEAD, published.stdout + published.stderr
    assert "Published 1 item" in published.stdout, published.stdout
    assert "Item name b'caf\\xe9.csv' is not UTF-8" in published.stderr, published.stderr
    assert "Item name ' lead.csv'" in published.stderr, published.stderr
    assert "contains control characters" in published.stderr, published.stderr
    assert "3 items not published" in published.stderr, published.stderr
    assert "Traceback" not in published.stderr


@pytest.mark.rabbitmq
def test_names_that_print_alike_or_reorder_the_line_are_printed_escaped(
    env: dict[str, str],
) -> None:
    names = ["caf\u00e9.csv", "cafe\u0301.csv", "a\u202exsc.csv", "x\u2028y.csv"]
    for name in names:
        Path(env["INPUT_URL"], name).write_text("not a csv")
    assert jobkit(env, "publish").returncode == 0
    assert jobkit(env, "run", "--parallelism", "1").returncode == ExitCode.DEAD

    status = jobkit({**env, "COLUMNS": "200"}, "status").stdout

    for raw in ("\u202e", "\u2028", "e\u0301"):
        assert raw not in status, status
    for escaped in ("caf\u00e9.csv", "cafe\\u0301.csv", "a\\u202exsc.csv", "x\\u2028y.csv"):
        assert escaped in status, status
