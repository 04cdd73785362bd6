"""The pandas-free aggregation gives pandas' numbers, and prints them as pandas and repr do."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from jobkit_publisher.data.samples import sample_csv
from jobkit_worker.builtin.aggregate import DATETIME_FORMAT, aggregate_csv
from jobkit_worker.builtin.hourly import Hourly, hourly_statistics
from jobkit_worker.builtin.hourly_csv import hourly_csv


def _pandas_hourly(data: bytes) -> pd.DataFrame:
    readings = pd.read_csv(io.BytesIO(data))
    readings["Datetime"] = pd.to_datetime(readings["Datetime"], format=DATETIME_FORMAT)
    hours = readings.set_index("Datetime")["Temperature"].resample("h")
    return pd.DataFrame(
        {"mean": hours.mean(), "std": hours.std(), "max": hours.max(), "min": hours.min()}
    )


def _pandas_csv(data: bytes) -> bytes:
    return _pandas_hourly(data).to_csv(date_format=DATETIME_FORMAT, lineterminator="\n").encode()


def _readings_csv(seconds: np.ndarray, values: np.ndarray) -> bytes:
    stamps = pd.to_datetime(seconds, unit="s").strftime(DATETIME_FORMAT)
    frame = pd.DataFrame({"Datetime": stamps, "Temperature": values})
    return frame.to_csv(index=False, lineterminator="\n").encode()


def test_a_generated_year_is_byte_for_byte_what_pandas_writes() -> None:
    data = sample_csv(rows=525_600, seed=3, index=2)
    assert aggregate_csv(data) == _pandas_csv(data)


def test_rows_out_of_order_give_the_same_bytes_as_pandas() -> None:
    lines = sample_csv(rows=20_000, seed=5, index=1).splitlines(keepends=True)
    body = lines[1:]
    np.random.default_rng(1).shuffle(body)
    data = b"".join(lines[:1] + body)
    assert aggregate_csv(data) == _pandas_csv(data)


def test_per_second_readings_with_tiny_and_huge_values_match_pandas_exactly() -> None:
    rng = np.random.default_rng(3)
    seconds = 1_577_836_800 + np.arange(20_000)
    values = rng.normal(0, 1, seconds.size) * np.where(rng.random(seconds.size) < 0.5, 1e-7, 1e17)
    values[rng.random(seconds.size) < 0.01] = np.nan
    data = _readings_csv(seconds, values)
    assert aggregate_csv(data) == _pandas_csv(data)


def test_hours_with_more_readings_than_the_exact_limit_agree_within_1e_9() -> None:
    data = sample_csv(rows=50_000, seed=2, index=4)
    expected = _pandas_hourly(data)
    table = pd.read_csv(io.BytesIO(data))
    seconds = pd.to_datetime(table["Datetime"]).to_numpy().astype("datetime64[s]").view(np.int64)

    result = hourly_statistics(seconds, table["Temperature"].to_numpy(), exact_limit=1)

    np.testing.assert_allclose(result.stats, expected.to_numpy(), rtol=1e-9, equal_nan=True)


def test_floats_are_printed_as_repr_at_every_magnitude() -> None:
    rng = np.random.default_rng(0)
    magnitudes = 10.0 ** rng.integers(-12, 22, 4_000)
    values = rng.random(4_000) * magnitudes * rng.choice([-1.0, 1.0], 4_000)
    values[:6] = [0.0, -0.0, 2.0, -7.0, np.inf, 1e16]
    stats = values.reshape(-1, 4)

    lines = hourly_csv(Hourly(0, stats)).decode().splitlines()[1:]

    expected = [",".join(repr(value) for value in row) for row in stats.tolist()]
    assert [line.split(",", 1)[1] for line in lines] == expected
