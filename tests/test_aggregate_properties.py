"""Property-based: whatever the bytes, the aggregation returns a right answer or an InputError."""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobkit_worker.builtin.aggregate import aggregate_csv
from jobkit_worker.errors import InputError

START = pd.Timestamp("2017-12-01 00:00:00")
readings = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=6 * 60),  # minutes after the start
        st.one_of(st.none(), st.floats(min_value=-60, max_value=60, allow_nan=False)),
    ),
    min_size=1,
    max_size=200,
)
CHECKS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _csv(rows: list[tuple[int, float | None]]) -> bytes:
    lines = ["Datetime,Temperature"]
    for minute, value in rows:
        stamp = (START + pd.Timedelta(minutes=minute)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{stamp},{'' if value is None else repr(value)}")
    return ("\n".join(lines) + "\n").encode()


@CHECKS
@given(readings)
def test_any_valid_readings_give_pandas_hourly_statistics_to_within_1e_14(
    rows: list[tuple[int, float | None]],
) -> None:
    data = _csv(rows)
    reference = pd.read_csv(io.BytesIO(data), parse_dates=["Datetime"]).set_index("Datetime")
    hours = reference["Temperature"].resample("h")
    expected = pd.DataFrame(
        {"mean": hours.mean(), "std": hours.std(), "max": hours.max(), "min": hours.min()}
    )

    result = pd.read_csv(io.BytesIO(aggregate_csv(data)), index_col="Datetime", parse_dates=True)

    assert result.index.equals(expected.index)
    np.testing.assert_allclose(
        result.to_numpy(dtype=float), expected.to_numpy(dtype=float), rtol=1e-14, atol=1e-12,
        equal_nan=True,
    )  # fmt: skip


def _damage(data: bytes, position: int, junk: bytes) -> bytes:
    position %= len(data) + 1
    return data[:position] + junk + data[position:]


@CHECKS
@given(
    readings,
    st.integers(min_value=0),
    st.one_of(
        st.binary(max_size=20),
        st.sampled_from([b",", b"\n", b'"', b"\x00", b"\xff", b"NaN", b"1e999", b"T", b"-", b" "]),
    ),
)
def test_damaged_input_gives_a_well_formed_result_or_an_input_error(
    rows: list[tuple[int, float | None]], position: int, junk: bytes
) -> None:
    data = _damage(_csv(rows), position, junk)
    try:
        result = aggregate_csv(data, "damaged.csv")
    except InputError as error:
        assert str(error).startswith("damaged.csv: ")
        assert "\n" not in str(error)
        return
    lines = result.decode().splitlines()
    assert lines[0] == "Datetime,mean,std,max,min"
    hours = [pd.Timestamp(line.split(",")[0]) for line in lines[1:]]
    assert all(b - a == pd.Timedelta(hours=1) for a, b in itertools.pairwise(hours))
    for line in lines[1:]:
        mean, std, high, low = (float(v) if v else math.nan for v in line.split(",")[1:])
        if not math.isnan(mean):
            assert low <= mean <= high or math.isclose(mean, high) or math.isclose(mean, low)
            assert math.isnan(std) or std >= 0
