"""`jobkit plot`: one result's hourly curve as a PNG; reading results back for drawing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import jobkit, settled_depths
from matplotlib.image import imread

from jobkit_publisher.data.samples import sample_csv
from jobkit_publisher.report.curves import read_curve
from jobkit_worker.builtin.aggregate import aggregate_csv
from jobkit_worker.errors import ExitCode

READINGS = "Datetime,Temperature\n2017-12-01 00:00:00,1\n"


def test_an_hour_without_readings_is_a_gap_in_the_curve() -> None:
    data = b"Datetime,mean,std,max,min\n2017-12-01 00:00:00,1.5,,2.0,1.0\n2017-12-01 01:00:00,,,,\n"

    curve = read_curve("r.csv", data)

    assert curve.mean[0] == 1.5 and np.isnan(curve.mean[1])
    assert curve.empty_hours == 1


def test_plot_writes_a_png_of_one_result(tmp_path: Path) -> None:
    result = tmp_path / "temperature1_aggregated.csv"
    result.write_bytes(aggregate_csv(sample_csv(3000, 0, 1)))

    plotted = jobkit(dict(os.environ), "plot", str(result), "--out", str(tmp_path / "fig.png"))

    assert plotted.returncode == 0, plotted.stderr
    pixels = imread(tmp_path / "fig.png")
    assert (
        pixels.shape[1] >= 600 and len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)) > 1
    )


def test_plot_writes_beside_the_result_unless_told_where(tmp_path: Path) -> None:
    results = tmp_path / "out"
    results.mkdir()
    result = results / "temperature1_aggregated.csv"
    result.write_bytes(aggregate_csv(sample_csv(3000, 0, 1)))

    plotted = subprocess.run(
        [str(Path(sys.executable).parent / "jobkit"), "plot", str(result)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert plotted.returncode == 0, plotted.stderr
    assert (results / "temperature1_aggregated.png").is_file()
    assert not (tmp_path / "temperature1_aggregated.png").exists()


def test_plot_of_a_file_that_is_not_a_result_exits_2_with_one_line(tmp_path: Path) -> None:
    readings = tmp_path / "temperature1.csv"
    readings.write_text(READINGS)

    plotted = jobkit(dict(os.environ), "plot", str(readings), "--out", str(tmp_path / "fig.png"))

    assert plotted.returncode == ExitCode.CONFIG
    assert plotted.stderr.strip().splitlines() == [
        f"error: Cannot plot {readings}: temperature1.csv: not an hourly result: the header is "
        "'Datetime,Temperature', expected 'Datetime,mean,std,max,min'."
    ]
    assert not (tmp_path / "fig.png").exists()


def test_the_cli_and_the_report_module_do_not_import_matplotlib_until_drawing() -> None:
    probe = (
        "import sys, jobkit_publisher.cli.app, jobkit_publisher.report.html;"
        " print('matplotlib' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_drawing_without_matplotlib_is_one_line_naming_the_extra_to_install(
    tmp_path: Path,
) -> None:
    result_csv = tmp_path / "a_aggregated.csv"
    result_csv.write_bytes(aggregate_csv(sample_csv(120, seed=0, index=1)))
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['matplotlib'] = None\n")

    result = jobkit({**os.environ, "PYTHONPATH": str(blocker)}, "plot", str(result_csv))

    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: The charts are drawn with matplotlib, which is not installed here: install the "
        "kit with its report extra (pip install 'amqp-jobkit[report]')."
    ]


@pytest.mark.rabbitmq
def test_a_run_asked_for_a_report_it_cannot_draw_says_so_before_taking_an_item(
    env: dict[str, str], tmp_path: Path
) -> None:
    Path(env["INPUT_URL"], "a.csv").write_bytes(sample_csv(120, seed=0, index=1))
    assert jobkit(env, "publish").returncode == 0
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['matplotlib'] = None\n")

    result = jobkit({**env, "PYTHONPATH": str(blocker)}, "run", "--report")

    assert result.returncode == ExitCode.CONFIG, result.stdout + result.stderr
    assert "install the kit with its report extra" in result.stderr, result.stderr
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (1, 0)) == (1, 0)
