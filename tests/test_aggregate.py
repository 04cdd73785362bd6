"""The aggregation keeps the AKS blog's semantics: hourly mean, sample std, max, min."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from jobkit_publisher.data.samples import sample_csv
from jobkit_worker.builtin.aggregate import aggregate_csv, aggregate_item, is_output, output_name
from jobkit_worker.errors import InputError

HEADER = "Datetime,Temperature\n"


def test_a_small_hand_checked_case_gives_the_hourly_statistics() -> None:
    data = HEADER + (
        "2017-12-01 00:00:00,16.0\n"
        "2017-12-01 00:20:00,18.0\n"
        "2017-12-01 00:40:00,20.0\n"
        "2017-12-01 01:05:00,10.5\n"
    )
    assert aggregate_csv(data.encode()).decode() == (
        "Datetime,mean,std,max,min\n"
        "2017-12-01 00:00:00,18.0,2.0,20.0,16.0\n"  # sample std of 16, 18, 20 is 2
        "2017-12-01 01:00:00,10.5,,10.5,10.5\n"  # one reading: no sample std
    )


def test_hours_without_readings_are_kept_as_empty_rows() -> None:
    data = HEADER + "2017-12-01 00:00:00,1.0\n2017-12-01 03:59:00,2.0\n"
    lines = aggregate_csv(data.encode()).decode().splitlines()
    assert lines[1:] == [
        "2017-12-01 00:00:00,1.0,,1.0,1.0",
        "2017-12-01 01:00:00,,,,",
        "2017-12-01 02:00:00,,,,",
        "2017-12-01 03:00:00,2.0,,2.0,2.0",
    ]


def test_missing_values_are_skipped_not_counted() -> None:
    data = HEADER + "2017-12-01 00:00:00,1.0\n2017-12-01 00:01:00,\n2017-12-01 00:02:00,3.0\n"
    assert aggregate_csv(data.encode()).decode().splitlines()[1] == (
        "2017-12-01 00:00:00,2.0,1.4142135623730951,3.0,1.0"
    )


def test_a_generated_year_equals_a_plain_pandas_resample() -> None:
    data = sample_csv(rows=525_600, seed=7, index=3)
    reference = pd.read_csv(io.BytesIO(data))
    reference["Datetime"] = pd.to_datetime(reference["Datetime"], format="%Y-%m-%d %H:%M:%S")
    hours = reference.set_index("Datetime")["Temperature"].resample("h")
    expected = pd.DataFrame(
        {"mean": hours.mean(), "std": hours.std(), "max": hours.max(), "min": hours.min()}
    )

    result = pd.read_csv(io.BytesIO(aggregate_csv(data)), index_col="Datetime", parse_dates=True)

    assert len(result) == 365 * 24
    assert list(result.columns) == ["mean", "std", "max", "min"]
    assert result.index.equals(expected.index)
    np.testing.assert_allclose(result.to_numpy(), expected.to_numpy(), rtol=1e-9, equal_nan=True)
    assert result["mean"].isna().sum() >= 3, "the sample's multi-hour gap is kept as empty hours"


def test_running_twice_gives_identical_bytes() -> None:
    data = sample_csv(rows=5_000, seed=1, index=1)
    assert aggregate_csv(data) == aggregate_csv(data)


def test_columns_may_come_in_any_order() -> None:
    data = "Temperature,Datetime\n4.0,2017-12-01 00:00:00\n"
    assert aggregate_csv(data.encode()).decode().splitlines()[1] == (
        "2017-12-01 00:00:00,4.0,,4.0,4.0"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "t.csv: the file is empty"),
        (" \r\n\t\n", "t.csv: the file is empty"),
        (HEADER, "t.csv: there are no readings below the header"),
        (HEADER + "\n\n", "t.csv: there are no readings below the header"),
        ("\x1f\x08\x00\x00\x00", "t.csv: binary data, not a CSV (it begins b'\\x1f\\x08"),
        ("a,b\n1,2\n", "t.csv: expected the columns Datetime,Temperature but the header is 'a,b'"),
        (
            HEADER + "2017-12-01 00:00:00,1\n2017-12-01 00:01:00,warm\n",
            "t.csv: line 3: Temperature 'warm' is not a number",
        ),
        (
            HEADER + "2017-12-01 00:00:00,1\n01/12/2017 00:01,2\n",
            "t.csv: line 3: Datetime '01/12/2017 00:01' is not in the form %Y-%m-%d %H:%M:%S",
        ),
        (HEADER + "2017-12-01 00:00:00,1\n,2\n", "t.csv: line 3: the Datetime is empty"),
        (HEADER + "2017-12-01 00:00:00,1,9\n", "t.csv: not a readable CSV (CSV parse error"),
        (
            HEADER + "2017-02-28 23:59:00,1\n2017-02-29 00:00:00,1.0\n",
            "t.csv: line 3: Datetime '2017-02-29 00:00:00' is not a date and time that exists",
        ),
        (
            HEADER + "2017-04-31 00:00:00,1.0\n",
            "t.csv: line 2: Datetime '2017-04-31 00:00:00' is not a date and time that exists",
        ),
        (
            HEADER + "2017-02-30 12:00:00,1.0\n",
            "t.csv: line 2: Datetime '2017-02-30 12:00:00' is not a date and time that exists",
        ),
        (
            HEADER + "2017-12-31 23:59:00,1\n2017-12-31 23:59:60,2\n",
            "t.csv: line 3: Datetime '2017-12-31 23:59:60' is not a date and time that exists",
        ),
        (
            HEADER + "2017-12-31 23:59:61,2\n",
            "t.csv: line 2: Datetime '2017-12-31 23:59:61' is not a date and time that exists",
        ),
        (
            HEADER + "2017-12-01 00:00:00,1\n17-12-01 00:00:00,2\n",
            "t.csv: line 3: Datetime '17-12-01 00:00:00' does not start with a four-digit year",
        ),
        (
            HEADER + "01-12-17 00:00:00,2\n",
            "t.csv: line 2: Datetime '01-12-17 00:00:00' does not start with a four-digit year",
        ),
        (
            HEADER + "0000-01-01 00:00:00,2\n",
            "t.csv: line 2: Datetime 0000-01-01 00:00:00 is before the year 1",
        ),
        (
            HEADER + "2017-12-01 00:00:00,1\n" + HEADER + "2017-12-01 00:01:00,2\n",
            "t.csv: line 3: Datetime 'Datetime' is not in the form %Y-%m-%d %H:%M:%S",
        ),
    ],
)
def test_malformed_input_raises_an_input_error_saying_what_and_where(
    content: str, message: str
) -> None:
    with pytest.raises(InputError) as raised:
        aggregate_csv(content.encode(), "t.csv")
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_task_names_its_output_after_the_input() -> None:
    outputs = aggregate_item("2017/temperature1.csv", (HEADER + "2017-12-01 00:00:00,1\n").encode())
    assert list(outputs) == ["2017/temperature1_aggregated.csv"]
    assert output_name("temperature6.csv") == "temperature6_aggregated.csv"
    assert is_output("temperature6_aggregated.csv")
    assert not is_output("temperature6.csv")


@pytest.mark.parametrize(
    "stamp", ["2017-12-01T00:01:00", "2017-12-01", "2017-12-01 00", "2017-12-01 00:01"]
)
def test_datetimes_in_other_iso_forms_are_refused_like_any_other(stamp: str) -> None:
    data = HEADER + f"2017-12-01 00:00:00,1\n{stamp},2\n"
    with pytest.raises(InputError) as raised:
        aggregate_csv(data.encode(), "t.csv")
    assert str(raised.value).startswith(f"t.csv: line 3: Datetime '{stamp}' is not in the form")


def test_a_leap_day_in_a_leap_year_is_a_real_date() -> None:
    data = HEADER + "2016-02-29 00:00:00,1.0\n2016-02-29 00:30:00,3.0\n"
    assert aggregate_csv(data.encode()).decode().splitlines()[1] == (
        "2016-02-29 00:00:00,2.0,1.4142135623730951,3.0,1.0"
    )


def test_a_span_of_more_hours_than_allowed_is_an_input_error_naming_the_limit() -> None:
    data = HEADER + "2017-12-01 00:00:00,1.0\n1017-12-01 00:00:00,2.0\n"
    with pytest.raises(InputError) as raised:
        aggregate_csv(data.encode(), "t.csv", max_span_hours=87_600)
    message = str(raised.value)
    assert message.startswith("t.csv: the readings span 8,765,")  # hours from 1017 to 2017
    assert "line 3" in message and "MAX_SPAN_HOURS (87,600)" in message


def test_a_span_of_exactly_the_allowed_hours_is_aggregated() -> None:
    data = HEADER + "2017-12-01 00:00:00,1.0\n2017-12-01 02:59:00,2.0\n"
    assert len(aggregate_csv(data.encode(), max_span_hours=3).splitlines()) == 4
    with pytest.raises(InputError, match="span 3 hours"):
        aggregate_csv(data.encode(), max_span_hours=2)


def test_an_hour_whose_sum_overflows_still_gets_its_mean_and_std() -> None:
    data = (
        b"Datetime,Temperature\n2017-12-01 00:00:00,1e308\n2017-12-01 00:01:00,1e308\n"
        b"2017-12-01 00:02:00,-1e308\n"
    )

    (row,) = aggregate_csv(data).decode().splitlines()[1:]

    mean, std, high, low = (float(value) for value in row.split(",")[1:])
    assert math.isclose(mean, 1e308 / 3, rel_tol=1e-14)
    assert math.isclose(std, 2 / math.sqrt(3) * 1e308, rel_tol=1e-14)
    assert (high, low) == (1e308, -1e308)


@pytest.mark.parametrize("header", ["Datetime,Temperature ", " Datetime,Temperature"])
def test_a_header_with_blanks_is_shown_with_them(header: str) -> None:
    with pytest.raises(InputError) as error:
        aggregate_csv(f"{header}\n2017-12-01 00:00:00,1\n".encode(), "b.csv")

    assert f"the header is {header!r} (blanks count)" in str(error.value)


@pytest.mark.parametrize("stamp", [" 2017-12-01 00:00:00", "2017-12-01 00:00:00 "])
def test_a_timestamp_with_blanks_around_it_is_refused_either_way(stamp: str) -> None:
    with pytest.raises(InputError, match=r"line 2: Datetime .* blanks around it"):
        aggregate_csv(f"Datetime,Temperature\n{stamp},1\n".encode(), "b.csv")


def test_a_reason_quotes_a_short_excerpt_of_the_input() -> None:
    with pytest.raises(InputError) as error:
        aggregate_csv(b"Datetime,Temperature\n2017-12-01 00:00:00," + b"w" * 5000 + b"\n", "b.csv")

    assert len(str(error.value)) < 200, str(error.value)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_file_is_named_as_such_not_as_binary_data(encoding: str) -> None:
    data = (HEADER + "2017-12-01 00:00:00,1.0\n").encode(encoding)
    with pytest.raises(InputError, match=r"^t\.csv: UTF-16 text .*save it as UTF-8"):
        aggregate_csv(data, "t.csv")
