"""Each output location keeps the success records of one queue, and each output belongs to
one item: the first to store it. A clash is refused before anything
is overwritten, and so is a file the kit did not write (an input, when inputs and outputs
share a location).

The owner of `x_aggregated.csv` is kept as `.jobkit/owners/x_aggregated.csv`, made with the
store's create, which only one of two racing workers wins.
"""

from __future__ import annotations

from collections.abc import Iterable

from jobkit_worker.done_records import Record
from jobkit_worker.errors import ConfigError, InputError
from jobkit_worker.names import KIT_DIR, check_output_name, owner_name
from jobkit_worker.storage.base import Store


def claim_outputs(store: Store, item: str, outputs: Iterable[str], record: Record | None) -> None:
    """Make `item` the owner of each of `outputs` before any is written.

    `record` is the item's success record from an earlier time, if any: an output it names
    with the same digest is the item's own even where no owner was kept (older versions of
    the kit kept none). Raises InputError, naming the output and its owner, on a clash.
    """
    for output in sorted(outputs):
        check_output_name(item, output)
        # Most outputs are new: their owner is made at once (or found, if another made it).
        exists = _exists(store, output)
        owner = _owner(store, output) if exists else None
        if owner is None:
            if exists and not _recorded(store, output, record):
                raise InputError(
                    f"{item}: its output {output} would replace a file the kit did not write "
                    "there (an input?); move that file, or have OUTPUT_URL elsewhere."
                )
            owner = store.create(owner_name(output), item.encode()).decode()
            if not owner:
                # Made in a group whose writes a crash cut short: no output of it was stored.
                store.write(owner_name(output), item.encode())
                owner = item
        if owner != item:
            raise InputError(
                f"{item}: its output {output} is item {owner}'s already; rename one of the "
                "two, or have the task give each its own output name."
            )


def _owner(store: Store, output: str) -> str | None:
    """Who owns `output`: None when nobody does, or a crash left the claim empty."""
    try:
        return store.read(owner_name(output)).decode() or None
    except InputError:
        return None


def _exists(store: Store, name: str) -> bool:
    try:
        store.size(name)
    except InputError:
        return False
    return True


def _recorded(store: Store, output: str, record: Record | None) -> bool:
    if record is None or output not in record.outputs:
        return False
    digest = store.digest(output)
    return digest is not None and digest.hex() == record.outputs[output]


LOCATION_OWNER = f"{KIT_DIR}/queue"


def claim_location(store: Store, queue: str) -> None:
    """Make `queue` the one whose success records `store` keeps, unless another queue's are
    kept there: then ConfigError naming it. Records are kept by item name, so two queues'
    records in one location would replace each other."""
    try:
        owner = store.read(LOCATION_OWNER).decode()
    except InputError:
        owner = store.create(LOCATION_OWNER, queue.encode()).decode()
    if owner and owner != queue:
        raise ConfigError(
            f"OUTPUT_URL {store} keeps the success records of queue {owner!r}; give queue "
            f"{queue!r} an OUTPUT_URL of its own (its records would replace {owner!r}'s), or "
            f"set QUEUE={owner}."
        )
