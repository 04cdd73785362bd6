"""The same count as a Python task: TASK=wordcount_task:count_words, with this directory on
PYTHONPATH (or registered under the entry-point group jobkit.tasks by a package of one's own).
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from wordcount import counts

from jobkit_worker.errors import InputError


def count_words(name: str, data: bytes) -> dict[str, bytes]:
    """One text file in, `<its name>.counts.json` out; a file that is not UTF-8 is dead-lettered."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
    result = json.dumps(counts(text), sort_keys=True) + "\n"
    return {f"{PurePosixPath(name).name}.counts.json": result.encode()}
