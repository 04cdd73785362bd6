"""Reading an hourly result (`Datetime,mean,std,max,min`) back as arrays to draw.

Plain numpy, no pandas: a report of many results stays quick to start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from jobkit_worker.builtin.hourly import COLUMNS
from jobkit_worker.errors import InputError

HEADER = ["Datetime", *COLUMNS]

Floats = NDArray[np.float64]
# A chart's scale does arithmetic on its limits (spans, margins, ticks), which overflows near
# the largest float: values are drawn up to here.
DRAWABLE = 1e150


@dataclass(frozen=True)
class Curve:
    """One result's hours and their mean, max and min; NaN for an hour without readings."""

    name: str
    hours: NDArray[np.datetime64]
    mean: Floats
    high: Floats
    low: Floats

    @property
    def empty_hours(self) -> int:
        return int(np.isnan(self.mean).sum())


def read_curve(name: str, data: bytes) -> Curve:
    """The curve in the CSV bytes `data` of result `name`.

    Raises InputError naming the file and line when it is not an hourly result.
    """
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not a text file ({exc.reason}).") from exc
    if not lines or lines[0].split(",") != HEADER:
        found = lines[0][:80] if lines else "an empty file"
        raise InputError(
            f"{name}: not an hourly result: the header is {found!r}, expected {','.join(HEADER)!r}."
        )
    stamps, values = [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        if len(fields) != len(HEADER):
            raise InputError(f"{name}: line {number} has {len(fields)} fields, not {len(HEADER)}.")
        stamps.append(fields[0].replace(" ", "T"))
        try:
            values.append([float(field) if field else np.nan for field in fields[1:]])
        except ValueError as exc:
            raise InputError(f"{name}: line {number}: {exc}.") from exc
    try:
        hours = np.array(stamps, dtype="datetime64[s]")
    except ValueError as exc:
        raise InputError(f"{name}: a Datetime is not %Y-%m-%d %H:%M:%S ({exc}).") from exc
    table = np.array(values, dtype=np.float64).reshape(-1, len(COLUMNS))
    beyond = np.flatnonzero((np.abs(table) > DRAWABLE).any(axis=1))  # NaN compares False
    if beyond.size:
        row = int(beyond[0])
        raise InputError(
            f"{name}: line {row + 2}: {lines[row + 1]!r} holds a value beyond ±{DRAWABLE:g}, "
            "which no chart's scale can show."
        )
    mean, high, low = (table[:, COLUMNS.index(column)] for column in ("mean", "max", "min"))
    return Curve(name, hours, mean, high, low)
