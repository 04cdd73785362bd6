"""The ledger: the items done, by their success records, each checked to still hold: every
output it names stored as it was then, and named by no other item's record.

Reading 100,000 records one by one takes seconds from a disk and far longer from Azure, so
what was read is kept in `.jobkit/<queue>.ledger.json` by each record's version as the store
lists it: a record is read again only when it changed. An output is checked by its digest
where the listing gives one (Azure), else by its version (size and time): its digest is
computed only when that differs from the one recorded. An item's input is checked the same
way, against the size, version and MD5 its record keeps: a changed one makes the item stale.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass, field

from jobkit_worker.done_records import Record, input_changed, read_record
from jobkit_worker.errors import ConfigError, InputError, StorageError
from jobkit_worker.names import KIT_DIR, RECORD_SUFFIX, record_name
from jobkit_worker.storage.base import Entry, Store

_FORMAT = 1  # of the kept file; another is read as none


@dataclass(frozen=True)
class Ledger:
    """The success records of one queue's items, checked."""

    records: dict[str, Record]  # item -> its record, for the items done whose record holds
    broken: dict[str, str]  # item -> why its record no longer holds
    stale: list[str]  # items done from an input that has changed since: to be done again
    by_digest: int  # outputs checked by a digest (listed, or computed)
    by_version: int  # outputs checked by size and time alone
    read_now: int = 0  # files whose digests were computed from their bytes, with `verify`
    recorded: set[str] = field(default_factory=set)  # the outputs any record read names
    inputs: int = 0  # inputs checked against their records
    # item -> when its record says it was done, for every record read: holding, stale or broken.
    finished: dict[str, str] = field(default_factory=dict)

    def checked(self) -> str:
        """How the outputs and inputs were checked, in a few words."""
        checked = self.by_digest + self.by_version
        inputs = f"; {self.inputs} inputs checked against their records" if self.inputs else ""
        if self.read_now:
            return (
                f"{checked} outputs and {self.inputs} inputs checked by digest, {self.read_now} "
                "files read now (--verify)"
            )
        if not checked:
            return "no outputs to check" + inputs
        if not self.by_version:
            return f"all {checked} outputs checked by digest{inputs}"
        by_digest = f", {self.by_digest} of them by digest" if self.by_digest else ""
        return f"{checked} outputs checked by name, size and time{by_digest}{inputs}"


def read_ledger(
    store: Store,
    queue: str,
    published: set[str] | None,
    inputs: Store | None = None,
    verify: bool = False,
) -> Ledger:
    """The records of `queue`'s items: of the names published to it when that is known, else
    of those whose records say they came from it. With `inputs`, where the items' files are,
    an item whose input changed since it was done is stale, not done. With `verify`, every
    output's and input's digest is computed from its bytes, whatever the listing says."""
    inventory = store.inventory()
    kept = _load(store, queue)
    records: dict[str, Record] = {}
    versions: dict[str, str] = {}  # item -> its record's version
    lost: dict[str, str] = {}  # item -> why its record, once read, cannot be now
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
        if record is None and (known is not None or published is not None):
            lost[item] = f"its success record {name} is unreadable (changed by hand?)"
        if record is None or (published is None and record.queue != queue):
            continue
        records[item], versions[item] = record, entry.version
    for item in kept.keys() - records.keys() - lost.keys():
        if record_name(item) not in inventory and (published is None or item in published):
            lost[item] = f"its success record {record_name(item)} is gone (deleted?)"
    check = _Check(store, inventory, inputs if records else None, verify)
    broken = check.shared(records) | lost
    for item, record in records.items():
        problem = check.outputs(record)
        if problem and item not in broken:
            broken[item] = problem
    stale = {item for item, record in records.items() if item not in broken and check.stale(record)}
    if read or check.verified_any or len(records) + len(lost) != len(kept):
        fresh = {item: (versions[item], check.verified(record)) for item, record in records.items()}
        # Kept while they are missing, so that every reader knows them for this queue's.
        fresh |= {item: kept[item] for item in lost if item in kept}
        _save(store, queue, fresh)
    holding = {
        item: record for item, record in records.items() if item not in broken and item not in stale
    }
    recorded = {output for record in records.values() for output in record.outputs}
    return Ledger(
        holding,
        broken,
        sorted(stale),
        check.by_digest,
        check.by_version,
        check.read_now,
        recorded,
        check.inputs_checked,
        {item: record.finished_at for item, record in records.items()},
    )


class _Check:
    """Checks records' outputs and inputs against one listing of each store."""

    def __init__(
        self, store: Store, inventory: dict[str, Entry], inputs: Store | None, verify: bool
    ) -> None:
        self.store = store
        self.inventory = inventory
        self.inputs = inputs
        self.input_listing = inputs.inventory() if inputs is not None else {}
        self.verify = verify
        self.by_digest = 0
        self.by_version = 0
        self.read_now = 0
        self.inputs_checked = 0
        self._verified: dict[str, str] = {}  # output -> its version, its digest now checked
        self._inputs_verified: dict[str, Entry] = {}  # item -> its input, its digest now checked

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
                    "kept: rename one input"
                )
        return broken

    def outputs(self, record: Record) -> str:
        """Why `record` no longer holds, or "" when every output it names is as stored."""
        for output, md5 in record.outputs.items():
            entry = self.inventory.get(output)
            if entry is None:
                return f"its output {output} is gone"
            if not self._holds(output, md5, entry, record.versions.get(output)):
                return f"its output {output} changed after it was stored"
        return ""

    def stale(self, record: Record) -> bool:
        """True when the input `record` was made from has changed since; an input no longer
        there leaves the results standing."""
        listed = self.input_listing.get(record.item)
        if self.inputs is None or listed is None:
            return False
        self.inputs_checked += 1
        changed = None if self.verify else input_changed(record, listed)
        if changed is None:
            self.read_now += self.verify
            digest = self.inputs.hash(record.item, "sha256")
            changed = digest is None or digest.hex() != record.input_sha256
            if not changed:
                self._inputs_verified[record.item] = listed
        return changed

    def _holds(self, output: str, md5: str, entry: Entry, version: str | None) -> bool:
        if self.verify:
            self.by_digest += 1
            self.read_now += 1
            digest = self.store.hash(output, "md5")
            return digest is not None and digest.hex() == md5
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
        return bool(self._verified) or bool(self._inputs_verified)

    def verified(self, record: Record) -> Record:
        """`record` with the versions of its outputs and input whose digests were checked now,
        so that the next check needs none."""
        versions = {
            output: self._verified[output] for output in record.outputs if output in self._verified
        }
        listed = self._inputs_verified.get(record.item)
        if listed is not None:
            record = dataclasses.replace(
                record,
                input_version=listed.version,
                input_md5=listed.md5.hex() if listed.md5 else record.input_md5,
            )
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
