"""Copying input files into a store, as the AKS blog's upload loop did, skipping what is there."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from jobkit_worker.storage import Store


def upload_files(
    source: Store,
    destination: Store,
    names: Sequence[str],
    on_file: Callable[[str, bool], None] = lambda name, uploaded: None,
) -> tuple[int, int]:
    """Copy each of `names` whose content differs at `destination`; returns (uploaded, skipped).

    `on_file(name, uploaded)` is called after each file.
    """
    uploaded = 0
    for name in names:
        data = source.read(name)
        fresh = destination.digest(name) != hashlib.md5(data).digest()
        if fresh:
            destination.write(name, data)
            uploaded += 1
        on_file(name, fresh)
    return uploaded, len(names) - uploaded
