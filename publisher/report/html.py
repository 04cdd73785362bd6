"""The batch report as one self-contained HTML page: inline style, images embedded as PNG."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from jobkit_publisher.report import charts
from jobkit_publisher.report.batch import Batch, Summary
from jobkit_worker.outcome import Verdict

_STYLE = """
:root { color-scheme: light dark; }
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1060px; margin: 2em auto;
       padding: 0 1em; background: Canvas; color: CanvasText; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid GrayText; padding-bottom: 0.2em; margin-top: 1.8em; }
.meta, .note { color: GrayText; }
.notes { border-left: 4px solid #E69F00; padding: 0.3em 1em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { text-align: left; padding: 0.25em 0.8em; border-bottom: 1px solid GrayText;
         vertical-align: top; }
figure { margin: 1em 0; }
img { max-width: 100%; height: auto; border-radius: 4px; }
code { font-size: 0.95em; }
"""


def render_report(batch: Batch, summary: Summary) -> str:
    """The report page of `batch`."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    sections = [
        f"<h1>Batch report: queue {escape(repr(batch.queue))}</h1>",
        f'<p id="verdict"><strong>{escape(batch.reconciliation.summary())}</strong></p>',
        f'<p class="meta">Made {now}; results in <code>{escape(batch.output_url)}</code>.</p>',
        f'<p class="meta" id="run">{escape(batch.run_shown)}</p>' if batch.run_shown else "",
        _notes(batch),
        _outcome(batch, summary),
        _timeline(batch),
        _curves(batch),
        _versions(batch),
    ]
    title = f"jobkit report: {escape(batch.queue)}"
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(section for section in sections if section)
        + "\n</body>\n</html>\n"
    )


def _notes(batch: Batch) -> str:
    nothing = not (batch.run or batch.records or batch.outputs or batch.dead_letters)
    notes = list(batch.notes)
    if nothing and not batch.queued:
        notes.insert(0, "Nothing to report yet: no run, no results, no dead letters, no items.")
    if not notes:
        return ""
    items = "".join(f"<li>{escape(note)}</li>" for note in notes)
    return f'<section id="notes" class="notes"><h2>Notes</h2><ul>{items}</ul></section>'


def _outcome(batch: Batch, summary: Summary) -> str:
    busy = summary.busy_workers
    rows = [
        ("published", str(summary.published)),
        ("done", str(summary.done)),
        ("dead-lettered", str(summary.dead)),
        ("retried (failed attempts)", str(summary.retried)),
        ("still queued", str(summary.queued)),
        ("wall time", _unknown(summary.wall_seconds, "{:.1f} s")),
        ("items per second", _unknown(summary.items_per_second, "{:.2f}")),
        (
            "parallelism achieved",
            "unknown"
            if busy is None
            else f"{busy:.2f} workers busy on average, of {summary.parallelism} asked for",
        ),
    ]
    parts = ['<section id="outcome"><h2>Outcome</h2>', _table(("", "items"), rows)]
    if batch.dead_letters:
        parts.append("<h3>Dead-lettered</h3>")
        dead = [(d.item, str(d.deliveries or "?"), d.reason) for d in batch.dead_letters]
        parts.append(_table(("item", "deliveries", "reason"), dead))
    retried = [
        (a.item or "(not known)", a.reason) for a in batch.attempts if a.outcome is Verdict.RETRY
    ]
    if retried:
        parts.append("<h3>Retried attempts</h3>")
        parts.append(_table(("item", "reason"), retried))
    if sum(summary.worker_seconds.values()) > 0:
        total = sum(summary.worker_seconds.values())
        split = [
            (name, f"{seconds:.2f} s", f"{100 * seconds / total:.0f} %")
            for name, seconds in summary.worker_seconds.items()
        ]
        parts.append("<h3>Where the workers' time went</h3>")
        parts.append(_table(("phase", "seconds, all workers", "share"), split))
        parts.append(
            '<p class="note">Start-up is from a worker process starting to its taking a '
            "message; other is acking, dead-lettering and phases that failed.</p>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def _timeline(batch: Batch) -> str:
    head = '<section id="timeline"><h2>Timeline</h2>'
    if not batch.attempts:
        return f'{head}<p class="note">No attempts recorded, so no timeline.</p></section>'
    started = batch.run.started_at if batch.run else 0.0
    png = charts.timeline_png(batch.attempts, started, _lanes(batch))
    caption = (
        "One bar per attempt on its worker slot: grey is start-up (the process starting until it "
        "took its message), then processing coloured by outcome, with storing hatched."
    )
    return f"{head}{_figure(png, 'Timeline of the attempts', caption)}</section>"


def _curves(batch: Batch) -> str:
    head = '<section id="curves"><h2>Hourly curves</h2>'
    if not batch.curves:
        return f'{head}<p class="note">No results to draw.</p></section>'
    caption = (
        "Hourly mean (line) with the hourly minimum to maximum (band); "
        "gaps are hours without readings. All curves share one temperature scale"
    )
    apart = charts.apart(batch.curves)
    if apart:
        names = ", ".join(apart[:20]) + (" …" if len(apart) > 20 else "")
        caption += (
            f", but {len(apart)} marked 'own scale' ({names}): their values lie so far beyond "
            "the others' that on one scale the others would be flat lines"
        )
    caption += "."
    figures = [
        _figure(png, "Hourly curves of the results", caption)
        for png in charts.curves_pngs(batch.curves)
    ]
    if batch.curves_left_out:
        left = ", ".join(batch.curves_left_out[:20])
        more = " …" if len(batch.curves_left_out) > 20 else ""
        figures.append(
            f'<p class="note">{len(batch.curves_left_out)} more results are not drawn: '
            f"{escape(left)}{more}. Draw one with <code>jobkit plot</code>.</p>"
        )
    return head + "\n".join(figures) + "</section>"


def _versions(batch: Batch) -> str:
    which = "the recorded run's" if batch.run else "the current environment's"
    return (
        '<section id="versions"><h2>Versions and settings</h2>'
        + _table(("", "version"), list(batch.versions.items()))
        + f"<p>Settings ({which}; secrets masked):</p>"
        + _table(("variable", "value"), [(k, v or "(not set)") for k, v in batch.settings.items()])
        + "</section>"
    )


def _lanes(batch: Batch) -> int:
    return int(batch.run.report.get("parallelism", 1)) if batch.run else 1


def _figure(png: bytes, alt: str, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}">'
        f'<figcaption class="note">{escape(caption)}</figcaption></figure>'
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _unknown(value: float | None, form: str) -> str:
    return "unknown (no run recorded)" if value is None else form.format(value)
