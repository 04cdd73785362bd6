"""Reconciliation: every published item is done, dead-lettered, queued or held by a worker.

The publish record says what was published, the ledger what is done, the queues what is
dead-lettered and what is waiting, and the broker how many messages workers hold (on a quorum
queue, each message taken and not yet settled counts as one of its consumers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobkit_worker.names import shown

SHOWN = 10  # names listed in a message, at most
STALE_WHY = "its input changed after it was done"


@dataclass(frozen=True)
class Reconciliation:
    """Published items by where they are now."""

    published: int | None
    done: int
    dead: int
    queued: int
    holders: int  # the queue's consumers: workers holding a message, and consumers waiting
    outstanding: list[str]  # published, neither done, dead-lettered nor once done
    done_and_dead: list[str]
    broken: dict[str, str] = field(default_factory=dict)  # once done, no longer: item -> why
    unconfirmed: list[str] = field(default_factory=list)  # sent, never confirmed by the broker
    checked: str = ""  # how the outputs of the done were checked
    stale: list[str] = field(default_factory=list)  # once done, their inputs changed since

    @property
    def in_flight(self) -> int:
        """Outstanding items workers may hold: no more than the broker counts consumers."""
        return min(self.holders, max(len(self.outstanding) - self.queued, 0))

    @property
    def unaccounted(self) -> int:
        """Outstanding items neither the queue nor the workers account for; negative when more
        are queued than outstanding."""
        return len(self.outstanding) - self.queued - self.in_flight

    @property
    def adds_up(self) -> bool:
        return self.published is not None and self.unaccounted == 0 and not self.broken

    def to_dict(self) -> dict[str, object]:
        return {
            "published": self.published,
            "done": self.done,
            "dead_lettered": self.dead,
            "queued": self.queued,
            "in_flight": self.in_flight,
            "consumers": self.holders,
            "missing": max(self.unaccounted, 0),
            "outstanding": self.outstanding,
            "done_and_dead_lettered": self.done_and_dead,
            "no_longer_done": self.broken,
            "unconfirmed": self.unconfirmed,
            "stale": self.stale,
            "checked": self.checked,
            "adds_up": self.adds_up,
        }

    def summary(self) -> str:
        """The counts in one sentence, then plainly whatever does not add up."""
        if self.published is None:
            return (
                f"No record of what was published (only 'jobkit publish' keeps one): "
                f"{self.done} done, {self.dead} dead-lettered, {self.queued} queued."
            )
        counts = (
            f"{self.published} published, {self.done} done, {self.dead} dead-lettered, "
            f"{self.queued} queued, {self.in_flight} held by workers"
        )
        notes = [
            f"All accounted for: {counts}." if self.adds_up else f"Not all accounted for: {counts}."
        ]
        if self.broken:
            notes.append(self._broken())
        if self.stale:
            count = len(self.stale)
            notes.append(
                f"{_are(count)} stale, {STALE_WHY} ({some_names(self.stale)}): 'jobkit publish' "
                f"does {'it' if count == 1 else 'them'} again."
            )
        if self.unaccounted > 0 and (unaccounted := self._unaccounted()):
            notes.append(unaccounted)
        elif self.unaccounted < 0:
            notes.append(
                f"{_are(-self.unaccounted)} queued beyond those outstanding: published twice, or "
                "by another tool."
            )
        if self.in_flight:
            notes.append(
                f"{_are(self.in_flight)} taken by workers now (RabbitMQ counts "
                f"{self.holders} consumer{'' if self.holders == 1 else 's'} of the queue): "
                "'jobkit status' once they end says where they went."
            )
        if self.done_and_dead:
            notes.append(
                f"{_are(len(self.done_and_dead))} both done and dead-lettered "
                f"({some_names(self.done_and_dead)}); 'jobkit dead list' says why."
            )
        if self.checked and (self.done or self.broken):
            notes.append(f"Done means its success record holds: {self.checked}.")
        return " ".join(notes)

    def _broken(self) -> str:
        count = len(self.broken)
        return (
            f"{_are(count)} done no longer ({some_reasons(self.broken)}): 'jobkit publish' does "
            f"{'it' if count == 1 else 'them'} again."
        )

    def _unaccounted(self) -> str:
        """Which items are neither done, dead-lettered, queued nor held, as exactly as can be
        known: RabbitMQ says how many messages are queued, not which, so the names are exact
        only when nothing is queued."""
        count, names = self.unaccounted, some_names(self.outstanding)
        if self.queued:
            return (
                f"{count} of these {len(self.outstanding)} ({names}) {_is(count)} neither "
                "queued, done nor dead-lettered; RabbitMQ does not say which. 'jobkit run' "
                "does the queued ones, then names the rest."
            )
        if self.in_flight:
            return (
                f"{count} of these {len(self.outstanding)} ({names}) {_is(count)} neither "
                "done, dead-lettered, queued nor held by a worker; once no worker holds one, "
                "'jobkit status' names them."
            )
        stale = set(self.stale)
        lost = [name for name in self.outstanding if name not in stale]
        if not lost:
            return ""
        return (
            f"{_are(len(lost))} neither done, dead-lettered nor queued ({some_names(lost)}): "
            f"lost; publish {'it' if len(lost) == 1 else 'them'} again with 'jobkit publish "
            f"--force {' '.join(lost)}'."
        )


def reconcile(
    published: set[str] | None,
    done: set[str],
    dead: set[str],
    queued: int,
    holders: int,
    broken: dict[str, str] | None = None,
    unconfirmed: set[str] | None = None,
    checked: str = "",
    stale: list[str] | None = None,
) -> Reconciliation:
    """Count the published items by where they are (done wins over dead-lettered; an item
    whose record no longer holds is neither)."""
    broken = broken or {}
    names = set(published) if published is not None else done | dead | set(broken)
    settled = done | set(broken)
    return Reconciliation(
        published=None if published is None else len(names),
        done=len(names & done),
        dead=len((names & dead) - settled),
        queued=queued,
        holders=holders,
        outstanding=sorted(names - settled - dead),
        done_and_dead=sorted(names & done & dead),
        broken={item: why for item, why in broken.items() if item in names},
        unconfirmed=sorted(unconfirmed or ()),
        checked=checked,
        stale=sorted(names & set(stale or ())),
    )


def some_names(names: list[str]) -> str:
    """The first SHOWN names, comma-separated, and how many more there are."""
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(shown(name) for name in names[:SHOWN]) + more


def some_reasons(reasons: dict[str, str]) -> str:
    """'name: why' for the first SHOWN names in order, and how many more there are."""
    names = sorted(reasons)
    more = f"; and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return "; ".join(f"{shown(name)}: {reasons[name]}" for name in names[:SHOWN]) + more


def _is(count: int) -> str:
    return "is" if count == 1 else "are"


def _are(count: int) -> str:
    return f"{count} {_is(count)}"
