"""The built-in task: one-minute temperature readings to hourly mean, std, max and min.

Data in, data out: no queue, no storage, no network.
"""

from __future__ import annotations

import io
import re
from pathlib import PurePosixPath

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from worker.errors import InputError

DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
OUTPUT_SUFFIX = "_aggregated.csv"
_CONVERT = pacsv.ConvertOptions(
    column_types={"Datetime": pa.timestamp("s"), "Temperature": pa.float64()},
    timestamp_parsers=[DATETIME_FORMAT],
    include_columns=["Datetime", "Temperature"],
)
_INVALID_VALUE = re.compile(r"column #(\d+): CSV conversion error to (\S+): invalid value '(.*)'")


def output_name(name: str) -> str:
    """`dir/temperature1.csv` -> `dir/temperature1_aggregated.csv`."""
    path = PurePosixPath(name)
    return str(path.with_name(path.stem + OUTPUT_SUFFIX))


def is_output(name: str) -> bool:
    """True for names this task writes, so they are not taken for inputs."""
    return name.endswith(OUTPUT_SUFFIX)


def aggregate_item(name: str, data: bytes) -> dict[str, bytes]:
    """The task the worker runs per item: input bytes in, {output name: bytes} out."""
    return {output_name(name): aggregate_csv(data, name)}


def aggregate_csv(data: bytes, name: str = "<input>") -> bytes:
    """Aggregate a `Datetime,Temperature` CSV to hourly statistics, as CSV bytes.

    One row per hour from the first reading's hour to the last one's; hours without readings
    are present with empty values. Raises InputError naming `name` and what is wrong.
    """
    readings = _read_readings(data, name)
    hours = readings.resample("h")
    hourly = pd.DataFrame(
        {"mean": hours.mean(), "std": hours.std(ddof=1), "max": hours.max(), "min": hours.min()}
    )
    return hourly.to_csv(date_format=DATETIME_FORMAT, lineterminator="\n").encode()


def _read_readings(data: bytes, name: str) -> pd.Series:
    if not data.strip():
        raise InputError(f"{name}: the file is empty (expected a 'Datetime,Temperature' header).")
    try:
        table = pacsv.read_csv(io.BytesIO(data), convert_options=_CONVERT)
    except KeyError as exc:  # pyarrow's ArrowKeyError: a column is missing
        header = data.split(b"\n", 1)[0].decode(errors="replace").strip()
        raise InputError(
            f"{name}: expected the columns Datetime,Temperature but the header is {header!r}."
        ) from exc
    except pa.ArrowInvalid as exc:
        raise InputError(f"{name}: {_describe_invalid(str(exc), data)}") from exc
    times = table.column("Datetime")
    if times.null_count:
        line = times.is_null().index(True).as_py() + 2
        raise InputError(f"{name}: line {line}: the Datetime is empty.")
    index = pd.DatetimeIndex(times.to_numpy(), name="Datetime")
    return pd.Series(table.column("Temperature").to_numpy(zero_copy_only=False), index=index)


def _describe_invalid(message: str, data: bytes) -> str:
    """Turn pyarrow's conversion error into 'line N: <what> ...' for the operator."""
    match = _INVALID_VALUE.search(message)
    if match is None:
        return f"not a readable CSV ({message.strip().splitlines()[0]})."
    column, value = int(match.group(1)), match.group(3)
    field, expected = ("Datetime", f"in the form {DATETIME_FORMAT}")
    if match.group(2) == "double":
        field, expected = "Temperature", "a number"
    return f"{_line_of(data, column, value)}{field} {value!r} is not {expected}."


def _line_of(data: bytes, column: int, value: str) -> str:
    """'line N: ' for the first line whose field `column` is `value`, or '' if not found."""
    for number, line in enumerate(io.BytesIO(data), start=1):
        fields = line.rstrip(b"\r\n").split(b",")
        if column < len(fields) and fields[column].decode(errors="replace") == value:
            return f"line {number}: "
    return ""
