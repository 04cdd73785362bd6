"""Deterministic sample inputs: a year of one-minute temperature readings per file."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from jobkit_worker.storage import Store

START = np.datetime64("2017-12-01T00:00:00", "s")
ROWS_PER_YEAR = 365 * 24 * 60
HEADER = b"Datetime,Temperature\n"


def sample_csv(rows: int, seed: int, index: int) -> bytes:
    """One file of `rows` readings a minute apart from 2017-12-01, with gaps and missing values.

    The same arguments always give the same bytes.
    """
    rng = np.random.default_rng([seed, index])
    minutes = np.arange(rows)
    days = minutes / 1440
    season = -7.0 * np.cos(2 * np.pi * (days + 10) / 365)  # coldest in late December
    daily = -4.0 * np.cos(2 * np.pi * (days - 0.125))  # warmest around 15:00
    drift = np.cumsum(rng.normal(0, 0.02, rows))
    drift -= np.linspace(0, drift[-1] if rows else 0, rows)  # keep the walk from wandering off
    temperature = np.round(10 + 2 * index + season + daily + drift, 1) + 0.0
    temperature[rng.random(rows) < 0.0005] = np.nan  # missing values: empty fields
    keep = _gaps(rng, rows)
    times = START + minutes[keep].astype("timedelta64[m]")
    table = pa.table(
        {
            "Datetime": pa.array(times, type=pa.timestamp("s")),
            "Temperature": pa.array(temperature[keep], from_pandas=True),
        }
    )
    body = io.BytesIO()
    pacsv.write_csv(table, body, pacsv.WriteOptions(include_header=False))
    return HEADER + body.getvalue()


def _gaps(rng: np.random.Generator, rows: int) -> np.ndarray:
    """A mask that drops a few runs of readings, one of them several whole hours long."""
    keep = np.ones(rows, dtype=bool)
    if rows < 10_000:
        return keep
    for length in (180 + int(rng.integers(0, 120)), 45, 7):
        start = int(rng.integers(0, rows - length))
        keep[start : start + length] = False
    return keep


def write_samples(store: Store, files: int, rows: int, seed: int) -> list[str]:
    """Write `temperature1.csv` … `temperature<files>.csv` into `store`; returns their names."""
    names = [f"temperature{index}.csv" for index in range(1, files + 1)]
    for index, name in enumerate(names, start=1):
        store.write(name, sample_csv(rows, seed, index))
    return names
