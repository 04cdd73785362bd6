"""The record of a queue's last local run, kept for `jobkit report`: the report and every attempt.

`jobkit run` writes it as JSON beside its worker log (`.jobkit/last-run-QUEUE.json` by default),
replacing the one before for that queue. Times are Unix seconds, so attempts of different
workers line up.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jobkit_publisher.queue.published import Published
from jobkit_publisher.run.outcome import Attempt, JobReport
from jobkit_worker.errors import InputError
from jobkit_worker.outcome import Verdict
from jobkit_worker.settings import Settings

DEFAULT_RUN_DIR = Path(".jobkit")  # the local runner's log, run record and report
REPORT_NAME = "report.html"


def run_record_name(queue: str) -> str:
    """`last-run-QUEUE.json`: each queue keeps its own, so a run of another does not replace it."""
    return f"last-run-{quote(queue, safe='')}.json"


@dataclass(frozen=True)
class RunRecord:
    """One `jobkit run`: its queue, settings (secrets masked), report and attempts."""

    queue: str
    started_at: float
    drain: bool
    settings: dict[str, str]
    report: dict[str, Any]  # JobReport.to_dict()
    attempts: list[Attempt] = field(default_factory=list)
    # The publish record's own times as the run's end read them: the publisher's clock, only
    # ever compared with itself (0: not known).
    batch_started: float = 0.0
    batch_last: float = 0.0

    @property
    def finished_at(self) -> float:
        return self.started_at + float(self.report.get("seconds", 0.0))


def attempt_begins(attempts: list[Attempt]) -> list[float]:
    """When each attempt began: its process's spawn, or the end of the attempt before it in the
    same process (a draining worker). Start-up is from there to the message's take."""
    last_end: dict[tuple[int, float], float] = {}
    begins = []
    for attempt in attempts:
        process = (attempt.lane, attempt.spawned)
        begins.append(last_end.get(process, attempt.spawned))
        last_end[process] = attempt.finished
    return begins


def record_run(
    report: JobReport, settings: Settings, drain: bool, published: Published | None
) -> RunRecord:
    """The record of a finished run, of the batch `published` (None: not known)."""
    return RunRecord(
        queue=settings.queue,
        started_at=report.started_at,
        drain=drain,
        settings=settings.describe(),
        report=report.to_dict(),
        attempts=list(report.attempts),
        batch_started=published.started if published else 0.0,
        batch_last=published.last if published else 0.0,
    )


def save_run(path: Path, record: RunRecord) -> None:
    """Write `record` to `path` (made with its directory), replacing the one before whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(asdict(record), indent=1) + "\n")
    temporary.replace(path)


def load_run(path: Path) -> RunRecord | None:
    """The run recorded at `path`, or None when there is none; InputError when unreadable."""
    try:
        fields = json.loads(path.read_text())
        attempts = [
            Attempt(**{**attempt, "outcome": Verdict(attempt["outcome"])})
            for attempt in fields.pop("attempts")
        ]
        return RunRecord(**fields, attempts=attempts)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InputError(
            f"The run record {path} is unreadable ({exc}); run the job again."
        ) from exc
