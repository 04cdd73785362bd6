"""How the built-in task names its outputs: `name.csv` gives `name_aggregated.csv`.

Apart from the task itself, so that listing outputs does not import pyarrow.
"""

from __future__ import annotations

from pathlib import PurePosixPath

OUTPUT_SUFFIX = "_aggregated.csv"


def output_name(name: str) -> str:
    """`dir/temperature1.csv` -> `dir/temperature1_aggregated.csv`."""
    path = PurePosixPath(name)
    return str(path.with_name(path.stem + OUTPUT_SUFFIX))


def is_output(name: str) -> bool:
    """True for names this task writes, so they are not taken for inputs."""
    return name.endswith(OUTPUT_SUFFIX)
