"""The ledger: the items done, by their success records, each checked to still hold: every
output it names stored as it was then, and named by no other item's record.

Reading 100,000 records one by one takes seconds from a disk and far longer from Azure, so
what was read is kept in `.jobkit/<queue>.ledger.json` by each record's version as the store
lists it: a record is read again only when it changed. An output is checked by its digest
where the listing gives one (Azure), else by its version (size and time): its digest is
computed only when that differs from the one recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass

from worker.done_records import Record, read_record
from worker.errors import ConfigError, InputError, StorageError
from worker.names import KIT_DIR, RECORD_SUFFIX
from worker.storage.base import Entry, Store

_FORMAT = 1  # of the kept file; another is read as none


@dataclass(frozen=True)
class Ledger:
    """The success records of one queue's items, checked."""

    records: dict[str, Record]  # item -> its record, for the items done whose record holds
    broken: dict[str, str]  # item -> why its record no longer holds
    by_digest: int  # outputs checked by a digest (listed, or computed)
    by_version: int  # outputs checked by size and time alone

    def checked(self) -> str:
        """How the outputs were checked, in a few words."""
        checked = self.by_digest + self.by_version
        if not checked:
            return "no outputs to check"
        if not self.by_version:
            return f"all {checked} outputs checked by digest"
        return f"{checked} outputs checked by name, size and time" + (
            f", {self.by_digest} of them by digest" if self.by_digest else ""
        )


def read_ledger(store: Store, queue: str, published: set[str] | None) -> Ledger:
    """The records of `queue`'s items: of the names published to it when that is known, else
    of those whose records say they came from it."""
    inventory = store.inventory()
    kept = _load(store, queue)
    records: dict[str, Record] = {}
    versions: dict[str, str] = {}  # item -> its record's version
    read = 0
    for name, entry in inventory.items():
        item = name.removesuffix(RECORD_SUFFIX)
        if item == name or (published is not None and item not in published):
            continue
        known = kept.get(item)
        if known is not None and known[0] == entry.version:
            record: Record | None = known[1]
        else:
            record, read = read_record(store, item), read + 1
        if record is None or (published is None and record.queue != queue):
            continue
        records[item], versions[item] = record, entry.version
    check = _Check(store, inventory)
    broken = check.shared(records)
    for item, record in records.items():
        problem = check.outputs(record)
        if problem and item not in broken:
            broken[item] = problem
    if read or check.verified_any or len(records) != len(kept):
        fresh = {item: (versions[item], check.verified(record)) for item, record in records.items()}
        _save(store, queue, fresh)
    holding = {item: record for item, record in records.items() if item not in broken}
    return Ledger(holding, broken, check.by_digest, check.by_version)


class _Check:
    """Checks records' outputs against one listing of the store."""

    def __init__(self, store: Store, inventory: dict[str, Entry]) -> None:
        self.store = store
        self.inventory = inventory
        self.by_digest = 0
        self.by_version = 0
        self._verified: dict[str, str] = {}  # output -> its version, its digest now checked

    def shared(self, records: dict[str, Record]) -> dict[str, str]:
        """The items whose records name an output another item's record names too."""
        owners: defaultdict[str, list[str]] = defaultdict(list)
        for item, record in records.items():
            for output in record.outputs:
                owners[output].append(item)
        broken = {}
        for output, items in owners.items():
            for item in items if len(items) > 1 else []:
                others = ", ".join(other for other in sorted(items) if other != item)
                broken[item] = (
                    f"its output {output} is also {others}'s, and only the last written is "
                    "kept: rename one input, then publish both again with --force"
                )
        return broken

    def outputs(self, record: Record) -> str:
        """Why `record` no longer holds, or "" when every output it names is as stored."""
        for output, md5 in record.outputs.items():
            entry = self.inventory.get(output)
            if entry is None:
                return f"its output {output} is gone; publish it again with --force"
            if not self._holds(output, md5, entry, record.versions.get(output)):
                return (
                    f"its output {output} changed after it was stored; publish it again with "
                    "--force"
                )
        return ""

    def _holds(self, output: str, md5: str, entry: Entry, version: str | None) -> bool:
        if entry.md5 is not None:
            self.by_digest += 1
            return entry.md5.hex() == md5
        if version == entry.version:
            self.by_version += 1
            return True
        self.by_digest += 1
        digest = self.store.digest(output)
        if digest is None or digest.hex() != md5:
            return False
        self._verified[output] = entry.version
        return True

    @property
    def verified_any(self) -> bool:
        return bool(self._verified)

    def verified(self, record: Record) -> Record:
        """`record` with the versions of the outputs whose digests were checked now, so that
        the next check needs none."""
        versions = {
            output: self._verified[output] for output in record.outputs if output in self._verified
        }
        if not versions:
            return record
        return dataclasses.replace(record, versions={**record.versions, **versions})


def _name(queue: str) -> str:
    return f"{KIT_DIR}/{queue}.ledger.json"


_FIELDS = [field.name for field in dataclasses.fields(Record)]


def _load(store: Store, queue: str) -> dict[str, tuple[str, Record]]:
    """item -> (its record's version, the record), as kept; {} when nothing usable is."""
    try:
        document = json.loads(store.read(_name(queue)))
        if document.get("format") != _FORMAT or document.get("fields") != _FIELDS:
            return {}
        return {row[1]: (row[0], Record(*row[1:])) for row in document["records"]}
    except (InputError, ValueError, TypeError, KeyError, AttributeError, IndexError):
        return {}


def _save(store: Store, queue: str, records: dict[str, tuple[str, Record]]) -> None:
    document = {
        "format": _FORMAT,
        "fields": _FIELDS,
        "records": [
            [version, *(getattr(record, name) for name in _FIELDS)]
            for version, record in records.values()
        ],
    }
    # Only a cache: a store this user may not write to is checked in full each time.
    with contextlib.suppress(StorageError, ConfigError):
        store.write(_name(queue), json.dumps(document, separators=(",", ":")).encode())
