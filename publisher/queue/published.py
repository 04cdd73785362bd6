"""The publish record: which names were published to a queue, kept in the output store beside
the success records, so that `jobkit status` can account for every item.

A name is confirmed once the broker confirmed its message, and unconfirmed while its message
may or may not be queued: sent, with the confirm not yet come (a publisher stopped or killed
meanwhile). Publishers of one queue take turns under a lock beside the record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from jobkit_worker.errors import ConfigError, InputError
from jobkit_worker.names import KIT_DIR
from jobkit_worker.storage.base import Store


@dataclass
class Published:
    """The names published to one queue."""

    confirmed: set[str] = field(default_factory=set)
    unconfirmed: set[str] = field(default_factory=set)  # sent; the broker's confirm never came
    # Published again because they were done no longer (a changed input or output), and not
    # seen done since: queued, held or dead-lettered, as the other names not done are. Each
    # with when its record then said it was done ("": no record), so that a record of a later
    # doing tells, whatever happens to it after.
    redoing: dict[str, str] = field(default_factory=dict)
    started: float = 0.0  # when the batch's first names were sent (Unix time); 0: not known
    last: float = 0.0  # when names were last sent
    # Marked unconfirmed by this publisher, not by an earlier one: only these can turn out unsent.
    _marked: set[str] = field(default_factory=set, repr=False, compare=False)

    @property
    def expected(self) -> set[str]:
        """Every name that should end done or dead-lettered."""
        return self.confirmed | self.unconfirmed

    def sending(self, names: Iterable[str], now: float) -> None:
        """`names` are about to be sent, at Unix time `now`: unconfirmed until the broker
        confirms them."""
        names = set(names)
        if names:
            self.started = self.started if self.expected else now
            self.last = now
        self._marked = names - self.unconfirmed
        self.unconfirmed |= names

    def settle(self, confirmed: Iterable[str], unsent: Iterable[str]) -> None:
        """`confirmed` were confirmed; `unsent` were not sent this time, and are no longer
        unconfirmed unless an earlier publisher had sent them without a confirm."""
        confirmed = set(confirmed)
        self.confirmed |= confirmed
        self.unconfirmed -= confirmed | (set(unsent) & self._marked)

    def to_bytes(self) -> bytes:
        document = {
            "confirmed": sorted(self.confirmed),
            "unconfirmed": sorted(self.unconfirmed),
            "redoing": dict(sorted(self.redoing.items())),
            "started": self.started,
            "last": self.last,
        }
        return json.dumps(document, indent=0).encode() + b"\n"


def published_name(queue: str) -> str:
    """Where the names published to `queue` are kept in the output store."""
    return f"{KIT_DIR}/{queue}.published.json"


def read_published(store: Store, queue: str) -> Published | None:
    """The names published to `queue`, or None when `jobkit publish` never recorded any.

    ConfigError naming the record when it cannot be read as one (torn by a full disk, a copy
    cut short): read as no record, it would have every name that is still queued or
    dead-lettered published again.
    """
    name = published_name(queue)
    try:
        data = store.read(name)
    except InputError:
        return None
    try:
        return _parsed(json.loads(data))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"The publish record {store}/{name} is damaged ({exc}); restore it from a copy, or "
            "move it aside to start a new one (an item still queued or dead-lettered may then "
            "be published twice)."
        ) from exc


def _parsed(document: object) -> Published:
    if isinstance(document, list):  # as earlier versions of the kit kept it: confirmed names
        return Published(set(_names(document)))
    if not isinstance(document, dict):
        raise TypeError(f"a JSON {type(document).__name__}, not an object")
    return Published(
        set(_names(document.get("confirmed", []))),
        set(_names(document.get("unconfirmed", []))),
        _redoing(document.get("redoing", {})),
        float(document.get("started", 0.0)),
        float(document.get("last", 0.0)),
    )


def _names(kept: object) -> list[str]:
    if not isinstance(kept, list) or not all(isinstance(name, str) for name in kept):
        raise TypeError("a list of names that is not one")
    return kept


def _redoing(kept: object) -> dict[str, str]:
    """The names being done again, as kept; a list, as earlier versions kept them, says not
    which records they were published again from."""
    if isinstance(kept, dict):
        return {str(name): str(finished) for name, finished in kept.items()}
    return dict.fromkeys(map(str, kept if isinstance(kept, list) else []), "")


def write_published(store: Store, queue: str, published: Published) -> None:
    """Replace the record of what was published to `queue`."""
    store.write(published_name(queue), published.to_bytes())


def forget_published(store: Store, queue: str) -> None:
    """Start a new batch: what was published to `queue` so far is no longer expected."""
    write_published(store, queue, Published())


@contextmanager
def publishing(store: Store, queue: str, on_wait: Callable[[], None]) -> Iterator[None]:
    """Be the one publisher of `queue` within the block: another waits until it ends, then
    sees what this one published."""
    with store.lock(f"{queue}.publish", on_wait):
        yield
