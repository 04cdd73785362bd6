"""`jobkit report` and `jobkit plot`: the batch report of a real run, and one result's curve."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pika
import pytest
from conftest import failing_once, jobkit, worker
from matplotlib.image import imread

from jobkit_publisher.report.batch import read_batch
from jobkit_publisher.report.charts import apart
from jobkit_publisher.run.record import run_record_name
from jobkit_worker.builtin.aggregate import aggregate_csv
from jobkit_worker.errors import ExitCode
from jobkit_worker.settings import Settings

MALFORMED = "Datetime,Temperature\n2017-12-01,1\n"
pytestmark = pytest.mark.rabbitmq

Batch = tuple[dict[str, str], subprocess.CompletedProcess[str]]  # the run's environment, the run

LATE = "Datetime,Temperature\n2017-12-01 00:00:00,1\n2017-12-01 00:01:00,2\n"


@pytest.fixture(scope="module")
def batch(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    """One real run, reported: three good items, one malformed (dead-lettered) and one whose
    first attempt fails (retried). Yields its environment and the run."""
    root = tmp_path_factory.mktemp("batch")
    queue = f"test-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "BROKER_URL": broker_url,
        "QUEUE": queue,
        "INPUT_URL": str(root / "in"),
        "OUTPUT_URL": str(root / "out"),
        "LOG_LEVEL": "INFO",
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert jobkit(env, "data", "--files", "3", "--rows", "2000").returncode == 0
        Path(env["INPUT_URL"], "broken.csv").write_text(MALFORMED)
        Path(env["INPUT_URL"], "late.csv").write_text(LATE)
        assert jobkit(env, "publish").returncode == 0
        run = jobkit(failing_once(env, root / "fail-once", "late.csv"), "run", "--parallelism", "2",
                     "--report")  # fmt: skip
        yield env, run
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    for name in (queue, f"{queue}.dead"):
        connection.channel().queue_delete(name)
    connection.close()


def _html(env: dict[str, str]) -> str:
    return Path(env["OUTPUT_URL"]).parent.joinpath(".jobkit/report.html").read_text()


def _row(html: str, label: str) -> str:
    found = re.search(rf"<tr><td>{re.escape(label)}</td><td>([^<]*)</td>", html)
    assert found, label
    return found.group(1)


def _pngs(html: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r"data:image/png;base64,([^\"]+)", html)]


def test_run_with_report_says_where_the_report_is(batch: Batch) -> None:
    _, run = batch
    assert run.returncode == ExitCode.DEAD, run.stderr
    assert "Wrote the report to .jobkit/report.html" in run.stdout, run.stdout


def test_the_report_has_every_section(batch: Batch) -> None:
    html = _html(batch[0])
    for section in ("outcome", "timeline", "curves", "versions"):
        assert f'<section id="{section}">' in html, section


def test_the_report_counts_published_done_dead_retried_and_queued(
    batch: Batch,
) -> None:
    html = _html(batch[0])
    counts = {label: _row(html, label) for label in ("published", "done", "dead-lettered")}
    assert counts == {"published": "5", "done": "4", "dead-lettered": "1"}
    assert _row(html, "retried (failed attempts)") == "1"
    assert _row(html, "still queued") == "0"
    assert _row(html, "wall time").endswith(" s")
    assert "workers busy on average, of 2 asked for" in _row(html, "parallelism achieved")


def test_the_report_says_first_whether_every_item_is_accounted_for(batch: Batch) -> None:
    html = _html(batch[0])
    body = html[html.index("<body>") :]
    verdict = re.search(r'<p id="verdict"><strong>([^<]*)</strong></p>', body)

    assert verdict, body[:400]
    assert body.index("</h1>") < verdict.start() < body.index("<section")
    assert verdict.group(1).startswith(
        "All accounted for: 5 published, 4 done, 1 dead-lettered, 0 queued"
    )


def test_the_reports_rate_counts_every_finished_item_as_the_live_display_does(
    batch: Batch,
) -> None:
    env = batch[0]
    record = json.loads(
        Path(env["OUTPUT_URL"]).parent.joinpath(f".jobkit/last-run-{env['QUEUE']}.json").read_text()
    )
    finished = 5  # four done, one dead-lettered
    assert _row(_html(env), "items per second") == f"{finished / record['report']['seconds']:.2f}"


def test_the_report_shows_the_runs_own_options_with_its_settings(batch: Batch) -> None:
    html = _html(batch[0])
    assert _row(html, "jobkit run --parallelism") == "2"
    assert _row(html, "jobkit run --drain") == "no"
    assert _row(html, "TASK") == "fail_once:aggregate_failing_once"


def test_a_run_of_another_queue_keeps_this_queues_run_record(env: dict[str, str]) -> None:
    Path(env["INPUT_URL"], "a.csv").write_text(LATE)
    jobkit(env, "publish", "a.csv")
    assert jobkit(env, "run").returncode == 0
    other = f"{env['QUEUE']}-other"
    try:
        elsewhere = {**env, "QUEUE": other, "OUTPUT_URL": str(Path(env["OUTPUT_URL"], "..", "o2"))}
        assert jobkit(elsewhere, "run").returncode == 0
    finally:
        connection = pika.BlockingConnection(pika.URLParameters(env["BROKER_URL"]))
        for name in (other, f"{other}.dead"):
            connection.channel().queue_delete(name)
        connection.close()

    assert jobkit(env, "report").returncode == 0
    html = Path(".jobkit/report.html").read_text()
    assert "No attempts recorded" not in html and "No run recorded" not in html
    assert _row(html, "done") == "1"


def test_results_are_drawn_in_natural_order(env: dict[str, str]) -> None:
    for number in (10, 2, 1):
        Path(env["OUTPUT_URL"], f"t{number}_aggregated.csv").write_bytes(
            aggregate_csv(LATE.encode())
        )

    batch = read_batch(Settings.from_env(env), Path(".jobkit/none.json"))

    assert [curve.name for curve in batch.curves] == [
        "t1_aggregated.csv",
        "t2_aggregated.csv",
        "t10_aggregated.csv",
    ]


def test_the_report_gives_the_dead_letter_and_its_reason(
    batch: Batch,
) -> None:
    html = _html(batch[0])
    assert "<td>broken.csv</td><td>1</td><td>broken.csv: line 2: Datetime" in html


def test_the_report_names_the_retried_item_and_why(batch: Batch) -> None:
    html = _html(batch[0])
    assert re.search(
        r"<h3>Retried attempts</h3>.*<td>late.csv</td><td>[^<]*its first attempt fails", html, re.S
    )


def test_every_embedded_image_is_a_sensible_picture_that_is_not_blank(
    batch: Batch,
) -> None:
    pngs = _pngs(_html(batch[0]))
    assert len(pngs) == 2, "the timeline and one figure of curves"
    for png in pngs:
        pixels = imread(io.BytesIO(png), format="png")
        height, width = pixels.shape[:2]
        assert 600 <= width <= 2000 and 150 <= height <= 2000, pixels.shape
        assert len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)) > 1


def test_the_report_loads_nothing_from_elsewhere(batch: Batch) -> None:
    html = _html(batch[0])
    assert re.findall(r'(?:src|href)="(?!data:)', html) == []
    assert "<script" not in html and "@import" not in html


def test_the_report_shows_the_versions_and_masks_the_broker_password(
    batch: Batch,
) -> None:
    html = _html(batch[0])
    assert re.search(r"<td>broker</td><td>RabbitMQ \d+\.\d+", html)
    assert re.search(r"<td>Python</td><td>3\.\d+", html)
    assert "<td>amqp-jobkit</td><td>0." in html
    password = batch[0]["BROKER_URL"].split("@")[0].rsplit(":", 1)[1]
    assert f":{password}@" not in html and ":***@" in html


def test_the_run_record_times_every_attempt_on_its_worker_slot(
    batch: Batch,
) -> None:
    record = json.loads(
        Path(batch[0]["OUTPUT_URL"])
        .parent.joinpath(f".jobkit/last-run-{batch[0]['QUEUE']}.json")
        .read_text()
    )
    done = [attempt for attempt in record["attempts"] if attempt["outcome"] == "done"]
    assert sorted(attempt["item"] for attempt in done) == [
        "late.csv", "temperature1.csv", "temperature2.csv", "temperature3.csv",
    ]  # fmt: skip
    for attempt in done:
        assert attempt["lane"] in (0, 1)
        assert attempt["spawned"] < attempt["took"] <= attempt["finished"]
        assert set(attempt["phases"]) == {"read", "task", "store"}


def test_chromium_shows_the_report_without_console_errors(batch: Batch, tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        message = "Debian's chromium is not installed; 'make chromium' installs it."
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    page = Path(batch[0]["OUTPUT_URL"]).parent / ".jobkit/report.html"
    shot = tmp_path / "report.png"
    options = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr"]
    browser = subprocess.run(
        ["chromium", *options, "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert browser.returncode == 0, browser.stderr
    console = [line for line in browser.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], browser.stderr
    assert imread(shot).shape[1] == 1200


def test_a_report_of_an_empty_batch_says_there_is_nothing_yet(env: dict[str, str]) -> None:
    result = jobkit(env, "report")

    assert result.returncode == 0, result.stderr
    html = Path(".jobkit/report.html").read_text()
    assert "Nothing to report yet" in html
    assert f"No run recorded at .jobkit/last-run-{env['QUEUE']}.json" in html
    assert "No attempts recorded, so no timeline." in html and "No results to draw." in html


def test_a_report_names_results_and_items_whose_success_records_are_missing(
    env: dict[str, str],
) -> None:
    assert jobkit(env, "data", "--files", "2", "--rows", "500").returncode == 0
    assert jobkit(env, "publish").returncode == 0
    assert jobkit(env, "run", "--parallelism", "2").returncode == 0
    Path(env["OUTPUT_URL"], "temperature1.csv.done.json").unlink()

    result = jobkit(env, "report", "--out", "partial.html")

    assert result.returncode == 0, result.stderr
    html = Path("partial.html").read_text()
    assert "1 results have no success record" in html and "temperature1_aggregated.csv" in html
    assert "1 items the last run did are not done now (temperature1.csv)" in html
    assert "its success record temperature1.csv.done.json is gone" in html
    assert _row(html, "done") == "1"


def test_a_worker_outcome_says_when_it_took_the_item_and_how_long_each_phase_took(
    env: dict[str, str],
) -> None:
    Path(env["INPUT_URL"], "one.csv").write_text(LATE)
    assert jobkit(env, "publish", "one.csv").returncode == 0
    before = time.time()

    outcome = json.loads(worker(env).stdout)

    assert before <= outcome["took_at"] <= time.time()
    assert set(outcome["phases"]) == {"read", "task", "store"}
    assert all(seconds >= 0 for seconds in outcome["phases"].values())


def _reading(value: str) -> str:
    return f"Datetime,Temperature\n2017-12-01 00:00:00,{value}\n2017-12-01 01:00:00,2\n"


def test_a_result_beyond_what_a_chart_can_scale_is_named_and_the_report_still_made(
    env: dict[str, str],
) -> None:
    for name, value in (("huge", "1e308"), ("low", "-1.7e308"), ("ok", "1")):
        Path(env["INPUT_URL"], f"{name}.csv").write_text(_reading(value))
    assert jobkit(env, "publish").returncode == 0

    run = jobkit(env, "run", "--report")

    assert run.returncode == 0, run.stdout + run.stderr
    html = Path(".jobkit/report.html").read_text()
    for name in ("huge", "low"):
        assert f"Result not drawn: {name}_aggregated.csv: line 2:" in html, html
    assert "which no chart" in html


def test_a_result_far_beyond_the_others_is_drawn_on_its_own_scale_and_says_so(
    env: dict[str, str],
) -> None:
    for name, value in (("a", "1"), ("b", "3"), ("c", "5"), ("spike", "1e17")):
        Path(env["OUTPUT_URL"], f"{name}_aggregated.csv").write_bytes(
            aggregate_csv(_reading(value).encode())
        )

    batch = read_batch(Settings.from_env(env), Path(".jobkit/none.json"))

    assert apart(batch.curves) == ["spike_aggregated.csv"]
    assert jobkit(env, "report").returncode == 0
    html = Path(".jobkit/report.html").read_text()
    assert "marked &#x27;own scale&#x27; (spike_aggregated.csv)" in html, html[-3000:]


def test_the_reports_counts_agree_with_its_verdict_when_an_item_is_no_longer_done(
    env: dict[str, str],
) -> None:
    for name, value in (("a", "1"), ("b", "2")):
        Path(env["INPUT_URL"], f"{name}.csv").write_text(_reading(value))
    assert jobkit(env, "publish").returncode == 0
    assert jobkit(env, "run").returncode == 0
    Path(env["INPUT_URL"], "b.csv").write_text(_reading("7"))  # b is stale now

    assert jobkit(env, "report").returncode == 0

    html = Path(".jobkit/report.html").read_text()
    assert _row(html, "done") == "1", html
    assert "1 published" not in html and "2 published, 1 done" in html, html
    assert "no success record" not in html, html
    assert "b.csv" in html and "its input changed after it was done" in html, html


def test_a_result_whose_name_is_not_utf8_is_shown_escaped_not_a_crash(
    env: dict[str, str],
) -> None:
    name = os.fsdecode(b"caf\xe9_aggregated.csv")
    Path(env["OUTPUT_URL"], name).write_bytes(aggregate_csv(LATE.encode()))

    result = jobkit(env, "report")

    assert result.returncode == 0, result.stderr
    assert "caf\\udce9_aggregated.csv" in Path(".jobkit/report.html").read_text()


def test_the_report_says_which_run_it_shows_and_leaves_out_a_run_of_an_earlier_batch(
    env: dict[str, str],
) -> None:
    Path(env["INPUT_URL"], "a.csv").write_text(LATE)
    jobkit(env, "publish", "a.csv")
    assert jobkit(env, "run").returncode == 0

    assert jobkit(env, "report").returncode == 0
    shown = re.search(r'<p class="meta" id="run">([^<]*)', Path(".jobkit/report.html").read_text())
    assert shown and "started 20" in shown.group(1) and ".jobkit/last-run-" in shown.group(1)

    assert jobkit(env, "purge", "--yes").returncode == 0  # a new batch
    Path(env["INPUT_URL"], "b.csv").write_text(LATE)
    jobkit(env, "publish", "b.csv")
    assert jobkit(env, "report").returncode == 0

    html = Path(".jobkit/report.html").read_text()
    assert 'id="run"' not in html and "No attempts recorded" in html
    assert "was of an earlier batch (first published" in html, html


def test_a_run_whose_clock_is_behind_the_publishers_is_still_shown(env: dict[str, str]) -> None:
    Path(env["INPUT_URL"], "a.csv").write_text(LATE)
    jobkit(env, "publish", "a.csv")
    assert jobkit(env, "run").returncode == 0
    path = Path(".jobkit", run_record_name(env["QUEUE"]))
    record = json.loads(path.read_text())
    # As the runner's host, an hour behind the publisher's, would have written it.
    record["started_at"] -= 3600
    for attempt in record["attempts"]:
        for moment in ("spawned", "took", "finished"):
            if attempt[moment]:
                attempt[moment] -= 3600
    path.write_text(json.dumps(record))

    assert jobkit(env, "report").returncode == 0

    html = Path(".jobkit/report.html").read_text()
    assert 'id="run"' in html and "left out" not in html, html
