"""The built-in task: one-minute temperature readings to hourly mean, std, max and min.

Data in, data out: no queue, no storage, no network. No pandas either: pyarrow parses, numpy
aggregates, and the numbers are pandas' own (see worker/hourly.py).
"""

from __future__ import annotations

import io
import re

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from jobkit_worker.builtin import DEFAULT_MAX_SPAN_HOURS
from jobkit_worker.builtin.arrow_numpy import first_missing, float_values, int_values
from jobkit_worker.builtin.hourly import Floats, Ints, hourly_statistics
from jobkit_worker.builtin.hourly_csv import hourly_csv
from jobkit_worker.builtin.outputs import is_output, output_name
from jobkit_worker.errors import InputError
from jobkit_worker.names import brief

__all__ = ["DATETIME_FORMAT", "aggregate_csv", "aggregate_item", "is_output", "output_name"]

DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TYPES = {"Datetime": pa.timestamp("s"), "Temperature": pa.float64()}
_CONVERT = pacsv.ConvertOptions(
    column_types=_TYPES, timestamp_parsers=[DATETIME_FORMAT], include_columns=list(_TYPES)
)
# Arrow's ISO 8601 parser is twice as fast as its strptime, but also takes a few shorter forms
# ('2017-12-01', '2017-12-01 10:05', a 'T' separator); _is_plain rules those out.
_CONVERT_FAST = pacsv.ConvertOptions(column_types=_TYPES, include_columns=list(_TYPES))
_PLAIN_HEADERS = (b"Datetime,Temperature", b"Temperature,Datetime")
_YEAR_ONE = int(np.datetime64("0001-01-01", "s").astype(np.int64))  # there is no year 0
_EXCERPT = 60  # characters of the input a reason quotes, at most
_SNIFF_BYTES = 8192  # text never holds a NUL byte; binary files almost always do early on
_DATETIME_TEXT = pacsv.ConvertOptions(
    column_types={"Datetime": pa.string()}, include_columns=["Datetime"]
)
_FIELDS = r"-(?P<day>\d+)[ T]\d+:\d+:(?P<second>\d+)"
_INVALID_VALUE = re.compile(r"column #(\d+): CSV conversion error to (\S+): invalid value '(.*)'")


def aggregate_item(
    name: str, data: bytes, max_span_hours: int = DEFAULT_MAX_SPAN_HOURS
) -> dict[str, bytes]:
    """The task the worker runs per item: input bytes in, {output name: bytes} out."""
    return {output_name(name): aggregate_csv(data, name, max_span_hours)}


def aggregate_csv(
    data: bytes, name: str = "<input>", max_span_hours: int = DEFAULT_MAX_SPAN_HOURS
) -> bytes:
    """Aggregate a `Datetime,Temperature` CSV to hourly statistics, as CSV bytes.

    One row per hour from the first reading's hour to the last one's; hours without readings
    are present with empty values. Raises InputError naming `name` and what is wrong, also
    when the readings span more than `max_span_hours` hours (a mistyped year, most likely).
    """
    seconds, values = _read_readings(data, name)
    _check_span(seconds, name, max_span_hours)
    return hourly_csv(hourly_statistics(seconds, values))


def _check_span(seconds: Ints, name: str, limit: int) -> None:
    """Refuse readings spanning more hours than `limit`, before any row is made."""
    earliest, latest = int(seconds.argmin()), int(seconds.argmax())
    span = int(seconds[latest]) // 3600 - int(seconds[earliest]) // 3600 + 1
    if span > limit:
        first, last = (_stamp(int(seconds[row])) for row in (earliest, latest))
        raise InputError(
            f"{name}: the readings span {span:,} hours, from {first} (line {earliest + 2}) to "
            f"{last} (line {latest + 2}), more than MAX_SPAN_HOURS ({limit:,}); fix the "
            "mistyped date, or raise the limit."
        )


def _stamp(seconds: int) -> str:
    return str(np.datetime64(seconds, "s")).replace("T", " ")


def _read_readings(data: bytes, name: str) -> tuple[Ints, Floats]:
    """(epoch seconds, values with NaN for missing ones), in file order."""
    if not data or data.isspace():  # not strip(): that would copy the whole file
        raise InputError(f"{name}: the file is empty (expected a 'Datetime,Temperature' header).")
    if _is_utf16(data[:_SNIFF_BYTES]):
        raise InputError(
            f"{name}: UTF-16 text (it begins {data[:16]!r}); save it as UTF-8, e.g. with "
            "'iconv -f UTF-16 -t UTF-8'."
        )
    if b"\0" in data[:_SNIFF_BYTES]:
        raise InputError(
            f"{name}: binary data, not a CSV (it begins {data[:16]!r}); "
            "expected 'Datetime,Temperature' text."
        )
    table = _parse_fast(data)
    if table is None:
        table = _parse_strict(data, name)
    if table.num_rows == 0:
        raise InputError(f"{name}: there are no readings below the header.")
    times = table.column("Datetime")
    missing = first_missing(times)
    if missing is not None:
        raise InputError(f"{name}: line {missing + 2}: the Datetime is empty.")
    seconds = int_values(times)
    earliest = int(seconds.argmin())
    if seconds[earliest] < _YEAR_ONE:
        raise InputError(
            f"{name}: line {earliest + 2}: Datetime {_stamp(int(seconds[earliest]))} is before "
            "the year 1, which does not exist in the calendar."
        )
    return seconds, float_values(table.column("Temperature"))


def _is_utf16(start: bytes) -> bool:
    """True for text in UTF-16: a byte-order mark, or ASCII with a NUL byte beside each."""
    if start.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    even, odd = start[0::2], start[1::2]
    return len(start) >= 2 and (even.strip(b"\0") == b"") != (odd.strip(b"\0") == b"")


def _parse_fast(data: bytes) -> pa.Table | None:
    """The table via the ISO parser when every Datetime is exactly `YYYY-MM-DD hh:mm:ss`."""
    newline = data.find(b"\n")
    body = newline + 1 if newline >= 0 else len(data)
    if data[:body].rstrip(b"\r\n") not in _PLAIN_HEADERS:
        return None
    try:
        table = _read_csv(data, _CONVERT_FAST)
    except (pa.ArrowInvalid, KeyError):
        return None  # the strict parse says what is wrong
    return table if _is_plain(data, body, table.num_rows) else None


def _is_plain(data: bytes, body: int, rows: int) -> bool:
    """True if every Datetime the ISO parser took, in the rows from `body` on, is strict.

    With exactly two columns, colons can only be in Datetime fields (a Temperature with one
    does not parse), and the forms the ISO parser accepts have at most two each; so 2 per row
    means all have seconds. Then no 'T' below the header means no 'T' separator.
    """
    return data.count(b":") == 2 * rows and data.find(b"T", body) < 0


def _parse_strict(data: bytes, name: str) -> pa.Table:
    try:
        table = _read_csv(data, _CONVERT)
    except KeyError as exc:  # pyarrow's ArrowKeyError: a column is missing
        header = data.split(b"\n", 1)[0].decode(errors="replace").rstrip("\r")
        raise InputError(
            f"{name}: expected the columns Datetime,Temperature but the header is "
            f"{_excerpt(header)} (blanks count)."
        ) from exc
    except pa.ArrowInvalid as exc:
        raise InputError(f"{name}: {_describe_invalid(str(exc), data)}") from exc
    _check_calendar(data, table, name)
    return table


def _check_calendar(data: bytes, table: pa.Table, name: str) -> None:
    """Refuse dates and times that do not exist (2017-02-29, 2017-04-31, 23:59:60).

    Arrow's strptime rolls them over to the next day or minute, where pandas refuses them; a
    rolled-over reading shows a day or a second other than the one written.
    """
    import pyarrow.compute as pc  # only on this slow path: the fast one refuses them itself

    text = _read_csv(data, _DATETIME_TEXT).column("Datetime")
    written = pc.extract_regex(text, _FIELDS)
    parsed = table.column("Datetime")
    differs = pc.or_(
        pc.not_equal(pc.cast(pc.struct_field(written, "day"), pa.int64()), pc.day(parsed)),
        pc.not_equal(pc.cast(pc.struct_field(written, "second"), pa.int64()), pc.second(parsed)),
    )
    row = pc.index(differs, True).as_py()
    if row >= 0:
        raise InputError(
            f"{name}: line {row + 2}: Datetime {_excerpt(text[row].as_py())} is not a date and "
            "time that exists."
        )
    # strptime's %Y takes one to four digits: '17-12-01' would be the year 17.
    short = pc.index(pc.invert(pc.match_substring_regex(text, r"^(\s*\d{4}-|$)")), True).as_py()
    if short >= 0:
        raise InputError(
            f"{name}: line {short + 2}: Datetime {_excerpt(text[short].as_py())} does not start "
            f"with a four-digit year; write it as {DATETIME_FORMAT}."
        )
    # Arrow's strptime skips blanks before a date and refuses them after: refused both ways.
    padded = pc.index(pc.match_substring_regex(text, r"^\s|\s$"), True).as_py()
    if padded >= 0:
        raise InputError(
            f"{name}: line {padded + 2}: Datetime {_excerpt(text[padded].as_py())} has blanks "
            f"around it; write it as {DATETIME_FORMAT}, without them."
        )


def _read_csv(data: bytes, convert: pacsv.ConvertOptions) -> pa.Table:
    # Read in place (no copy of the input), with the system allocator: Arrow's default pool
    # keeps its parse buffers, twice the peak memory for no gain in speed.
    source = pa.BufferReader(pa.py_buffer(data))
    return pacsv.read_csv(source, convert_options=convert, memory_pool=pa.system_memory_pool())


def _describe_invalid(message: str, data: bytes) -> str:
    """Turn pyarrow's conversion error into 'line N: <what> ...' for the operator."""
    match = _INVALID_VALUE.search(message)
    if match is None:
        return f"not a readable CSV ({brief(message.strip().splitlines()[0], _EXCERPT)})."
    column, value = int(match.group(1)), match.group(3)
    field, expected = ("Datetime", f"in the form {DATETIME_FORMAT}")
    if match.group(2) == "double":
        field, expected = "Temperature", "a number"
    if field == "Datetime" and value != value.strip():
        expected += ", without blanks around it"
    return f"{_line_of(data, column, value)}{field} {_excerpt(value)} is not {expected}."


def _excerpt(text: str) -> str:
    """A field or line of the input, quoted with its blanks and escapes, cut short."""
    return repr(brief(text, _EXCERPT))


def _line_of(data: bytes, column: int, value: str) -> str:
    """'line N: ' for the first line below the header whose field `column` is `value`, or ''
    if not found."""
    lines = io.BytesIO(data)
    lines.readline()  # the header: a value found there is a second header line's, further on
    for number, line in enumerate(lines, start=2):
        fields = line.rstrip(b"\r\n").split(b",")
        if column < len(fields) and fields[column].decode(errors="replace") == value:
            return f"line {number}: "
    return ""
