"""A task for tests that need a retry: the built-in aggregation, except that the items named in
FAIL_ONCE_ITEMS (comma-separated) fail their first attempt, wherever it runs.

The attempts share FAIL_ONCE_DIR, where a first attempt leaves its mark before failing, so the
next attempt succeeds however soon it comes. When FAIL_ONCE_DIR holds a file `wait`, a first
attempt fails only once the file `go` is there too: the test chooses the moment.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from jobkit_worker.builtin.aggregate import aggregate_item

WAIT_SECONDS = 60


def aggregate_failing_once(name: str, data: bytes) -> dict[str, bytes]:
    """The built-in task, failing the first attempt at each item named in FAIL_ONCE_ITEMS."""
    state = Path(os.environ["FAIL_ONCE_DIR"])
    mark = state / f"{name}.failed"
    if name in os.environ["FAIL_ONCE_ITEMS"].split(",") and not mark.exists():
        deadline = time.monotonic() + WAIT_SECONDS
        while (state / "wait").exists() and not (state / "go").exists():
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        mark.touch()
        raise RuntimeError(f"{name}: its first attempt fails, as the test asks")
    return aggregate_item(name, data)
