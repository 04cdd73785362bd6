"""The work of one item with nothing around it, and the no-queue floor of `make bench`.

`python -m bench.floor IN OUT NAME...` aggregates each file in turn; two of these, each given
half the files, are what two cores do with no broker at all.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jobkit_worker.builtin.aggregate import aggregate_csv
from jobkit_worker.builtin.outputs import output_name
from jobkit_worker.storage.local import LocalStore


def aggregate_file(input_dir: str, output_dir: str, name: str) -> str:
    """What the kit's built-in task does with one item: read the file, aggregate it, store the
    result with the fsync'd atomic write; returns the output's name."""
    result = aggregate_csv(Path(input_dir, name).read_bytes())
    target = output_name(name)
    LocalStore(Path(output_dir)).write(target, result)
    return target


if __name__ == "__main__":
    input_dir, output_dir, *names = sys.argv[1:]
    for name in names:
        aggregate_file(input_dir, output_dir, name)
