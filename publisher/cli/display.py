"""How the job looks in a terminal: the live progress bar and the final report."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table
from rich.text import Text

from jobkit_publisher.queue.dead import DeadLetter
from jobkit_publisher.queue.status import QueueStatus
from jobkit_publisher.run.outcome import JobReport
from jobkit_worker.names import shown

SHOWN_OUTPUTS = 20  # outputs listed by 'jobkit status', at most


class _RateColumn(ProgressColumn):
    """Items finished per second since the start."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = f"{task.completed / elapsed:.1f}/s" if elapsed > 0 else "-/s"
        return Text(rate, no_wrap=True)  # on one line at 80 columns: the bar gives way


@contextmanager
def job_progress(console: Console, enabled: bool) -> Iterator[Any]:
    """A live bar of done, failed and remaining items; yields the callback the runner calls."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn(
            "{task.fields[done]} done, {task.fields[dead]} dead, "
            "{task.fields[failed]} failed, {task.fields[remaining]} remaining"
        ),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )

    with progress:
        task = progress.add_task("job", total=0, done=0, failed=0, dead=0, remaining=0)
        printed = 0  # notices printed so far

        def update(report: JobReport) -> None:
            nonlocal printed
            for notice in report.notices[printed:] if enabled else []:  # --json: stdout is JSON
                progress.console.print(notice, markup=False, highlight=False)
            printed = len(report.notices)
            remaining = report.remaining
            finished = report.finished
            progress.update(
                task,
                completed=finished,
                total=finished + remaining,
                done=report.items_done,
                dead=len(report.dead),
                failed=len(report.failures),
                remaining=remaining,
            )

        yield update


def print_report(console: Console, report: JobReport, queue: str, outputs: str, logs: str) -> None:
    """The short report at the end of a run."""
    retried = len(report.failures)
    already = (
        f" (and {len(report.already_done)} copies of items already done, acked without doing "
        "them again)"
        if report.already_done
        else ""
    )
    console.print(
        f"Queue {queue!r}: {len(report.done)} done{already}, {len(report.dead)} dead-lettered, "
        f"{retried} failed attempts retried, {report.queued} still queued; "
        f"{report.seconds:.1f} s wall time (parallelism {report.parallelism}, "
        f"completions {report.completions}).",
        markup=False,
        highlight=False,
    )
    if report.dead:
        console.print("Dead-lettered (see 'jobkit status'):", markup=False)
        for item, reason in report.dead:
            console.print(f"  {_about(item, reason)}", markup=False, highlight=False)
    new_dead = report.dead_letters_after - report.dead_letters_before - len(report.dead)
    if new_dead > 0:
        console.print(
            f"  {new_dead} more dead-lettered by the broker after repeated crashes "
            "(see 'jobkit status').",
            markup=False,
        )
    if report.failures:
        console.print("Failed attempts (retried):", markup=False)
        for item, reason in report.failures:
            console.print(f"  {_about(item, reason)}", markup=False, highlight=False)
    if report.queued and not report.stopped:
        console.print(
            f"{report.queued} items were left behind in the queue: the job counted enough "
            "successful workers before they were taken. Run it again to do them.",
            markup=False,
        )
    if report.stopped:
        console.print(f"Stopped early: {report.stopped}", style="bold red", markup=False)
    console.print(f"Outputs in {outputs}; worker logs in {logs}.", markup=False, highlight=False)


def print_status(console: Console, status: QueueStatus, outputs: str) -> None:
    """The queue, its dead letters with reasons, and the outputs written."""
    console.print(
        f"Queue {status.queue!r}: {status.ready} ready; {len(status.dead_letters)} dead letters "
        f"in {status.dead_queue!r}; {len(status.outputs)} outputs in {outputs}.",
        markup=False,
        highlight=False,
    )
    console.print(status.reconciliation.summary(), markup=False, highlight=False)
    if status.dead_letters:
        print_dead_letters(console, status.dead_letters)
    for name in status.outputs[:SHOWN_OUTPUTS]:
        console.print(f"  {shown(name)}", markup=False, highlight=False)
    if len(status.outputs) > SHOWN_OUTPUTS:
        console.print(
            f"  and {len(status.outputs) - SHOWN_OUTPUTS} more ('jobkit status --json' lists "
            "them all)",
            markup=False,
        )


def print_dead_letters(console: Console, letters: list[DeadLetter], history: bool = False) -> None:
    """A table of dead letters: item, deliveries, reason (and the broker's x-death history)."""
    names = ["item", "deliveries", "failed at", "reason"] + (["x-death"] if history else [])
    # Folded, never cut short: the item names are what 'jobkit dead requeue' needs.
    columns = [Column(name, overflow="fold") for name in names]
    table = Table(*columns, title="Dead letters", title_justify="left")
    for letter in letters:
        row = [
            shown(letter.item),
            str(letter.deliveries or "?"),
            letter.failed_at,
            shown(letter.reason.removeprefix(f"{letter.item}: ")),
        ]
        table.add_row(*row, *(["\n".join(letter.history) or "-"] if history else []))
    console.print(table)


def _about(item: str, reason: str) -> str:
    """'item: reason', without repeating the item when the reason already starts with it."""
    if not item:
        return f"(no item): {shown(reason)}"
    return shown(reason if reason.startswith(f"{item}: ") else f"{item}: {reason}")
