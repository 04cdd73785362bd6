"""Arrow columns to numpy arrays and back, through their buffers.

pyarrow's own conversions (`to_numpy`, `pa.array`) import pandas whenever it is installed,
which alone costs a worker more than its whole item; these never do.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from jobkit_worker.builtin.hourly import Floats, Ints


def float_values(column: pa.ChunkedArray) -> Floats:
    """A float64 column as one array, NaN where a value is missing."""
    values = np.empty(len(column), dtype=np.float64)
    row = 0
    for chunk in column.chunks:  # filled in place: no second copy of a large column
        part = values[row : row + len(chunk)]
        part[...] = _data(chunk, np.float64)
        if chunk.null_count:
            part[~_valid(chunk)] = np.nan
        row += len(chunk)
    return values


def int_values(column: pa.ChunkedArray) -> Ints:
    """A column of 64-bit values (timestamps: their counts since the epoch) as one array."""
    values = np.empty(len(column), dtype=np.int64)
    row = 0
    for chunk in column.chunks:
        values[row : row + len(chunk)] = _data(chunk, np.int64)
        row += len(chunk)
    return values


def first_missing(column: pa.ChunkedArray) -> int | None:
    """The row of the first missing value, or None."""
    row = 0
    for chunk in column.chunks:
        if chunk.null_count:
            return row + int(np.argmin(_valid(chunk)))
        row += len(chunk)
    return None


def float_array(values: Floats) -> pa.Array:
    """An Arrow float64 array of `values`, NaN as missing."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    present = ~np.isnan(values)
    validity = pa.py_buffer(np.packbits(present, bitorder="little"))
    return pa.Array.from_buffers(pa.float64(), len(values), [validity, pa.py_buffer(values)])


def timestamp_array(seconds: Ints) -> pa.Array:
    """An Arrow timestamp[s] array of epoch seconds."""
    seconds = np.ascontiguousarray(seconds, dtype=np.int64)
    return pa.Array.from_buffers(pa.timestamp("s"), len(seconds), [None, pa.py_buffer(seconds)])


def _data(chunk: pa.Array, dtype: type[np.generic]) -> NDArray[np.generic]:
    buffer = chunk.buffers()[1]
    if buffer is None:
        return np.empty(0, dtype=dtype)
    return np.frombuffer(buffer, dtype=dtype, count=chunk.offset + len(chunk))[chunk.offset :]


def _valid(chunk: pa.Array) -> NDArray[np.bool_]:
    bits = np.frombuffer(chunk.buffers()[0], dtype=np.uint8)
    flags = np.unpackbits(bits, count=chunk.offset + len(chunk), bitorder="little")
    return flags[chunk.offset :].astype(bool)
