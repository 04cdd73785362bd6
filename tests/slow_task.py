"""A task for tests that need items in flight: the built-in aggregation, after SLOW_SECONDS."""

from __future__ import annotations

import os
import time

from jobkit_worker.builtin.aggregate import aggregate_item


def aggregate_slowly(name: str, data: bytes) -> dict[str, bytes]:
    """The built-in task, SLOW_SECONDS later."""
    time.sleep(float(os.environ["SLOW_SECONDS"]))
    return aggregate_item(name, data)
