"""The baseline: the AKS blog's worker, pandas and all, as it ran one item per process.

Its aggregation keeps the seed's semantics with today's pandas: `'H'` is now `'h'`, and the
statistics are pandas' own reductions (numpy callables in `agg` would now run per group in
Python, ten times slower, with numpy's ddof=0 std). Output in the kit's format.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pika

DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def seed_aggregate(source: Path, target: Path) -> None:
    """Read, aggregate and write one file the seed's way."""
    df = pd.read_csv(source)
    df["Datetime"] = pd.to_datetime(df["Datetime"], format=DATETIME_FORMAT)
    hours = df.set_index("Datetime")["Temperature"].resample("h")
    hourly = hours.agg(["mean", "std", "max", "min"])
    hourly.to_csv(target, date_format=DATETIME_FORMAT, lineterminator="\n")


def main() -> int:
    """Take one message, aggregate its file, write the result, ack: the seed's command."""
    connection = pika.BlockingConnection(pika.URLParameters(os.environ["BROKER_URL"]))
    channel = connection.channel()
    method, _, body = channel.basic_get(os.environ["QUEUE"], auto_ack=False)
    if method is None:
        connection.close()
        return 0
    name = body.decode()
    output = Path(os.environ["OUTPUT_URL"], Path(name).stem + "_aggregated.csv")
    seed_aggregate(Path(os.environ["INPUT_URL"], name), output)
    channel.basic_ack(method.delivery_tag)
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
