"""Hourly statistics as CSV text: `Datetime,mean,std,max,min`, floats as Python's repr.

Arrow's CSV writer formats the numbers (shortest round-trip digits, like repr) a few times
faster than Python can; the values it writes differently from repr are rewritten here.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from jobkit_worker.builtin.arrow_numpy import float_array, timestamp_array
from jobkit_worker.builtin.hourly import COLUMNS, Floats, Hourly

HEADER = ("Datetime," + ",".join(COLUMNS) + "\n").encode()
_WRITE = pacsv.WriteOptions(include_header=False, quoting_style="none")
# Within these magnitudes Arrow's writer and repr print the same digits the same way; outside
# them they choose exponent notation at different points (checked by a test).
_SAME_FROM, _SAME_BELOW = 1e-4, 1e9


def hourly_csv(hourly: Hourly) -> bytes:
    """The CSV bytes: one line per hour, `%Y-%m-%d %H:%M:%S` stamps, empty fields for NaN."""
    if len(hourly.stats) == 0:
        return HEADER
    columns = [timestamp_array(hourly.seconds)]
    columns += [float_array(hourly.stats[:, index]) for index in range(len(COLUMNS))]
    table = pa.Table.from_arrays(columns, names=["Datetime", *COLUMNS])
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, _WRITE)  # a missing (NaN) value is an empty field
    return HEADER + _fix_floats(sink.getvalue(), hourly.stats)


def _fix_floats(text: bytes, stats: Floats) -> bytes:
    """Rewrite the fields Arrow formats unlike repr: whole numbers ('2' for '2.0'), tiny, huge."""
    magnitude = np.abs(stats)
    with np.errstate(invalid="ignore"):
        unlike = (stats == np.trunc(stats)) | (magnitude < _SAME_FROM) | (magnitude >= _SAME_BELOW)
    rows, columns = np.nonzero(unlike)
    if rows.size == 0:
        return text
    lines = text.split(b"\n")
    row, fields = -1, list[bytes]()
    cells = zip(rows.tolist(), columns.tolist(), stats[rows, columns].tolist(), strict=True)
    for at, column, value in cells:
        if at != row:
            if row >= 0:
                lines[row] = b",".join(fields)
            row, fields = at, lines[at].split(b",")
        fields[column + 1] = repr(value).encode()
    lines[row] = b",".join(fields)
    return b"\n".join(lines)
