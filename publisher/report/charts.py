"""The report's charts as PNG bytes: the run's timeline and the hourly curves.

matplotlib is imported inside these functions only, so no other command pays for it. Figures
have a white background and a colour-blind-safe palette, readable in light and dark viewers.
"""

from __future__ import annotations

import importlib.util
import io
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from jobkit_publisher.report.curves import Curve
from jobkit_publisher.run.outcome import Attempt
from jobkit_publisher.run.record import attempt_begins
from jobkit_worker.errors import ConfigError
from jobkit_worker.outcome import Verdict

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

CURVES_PER_FIGURE = 12
_COLUMNS = 3
# Okabe and Ito's palette; grey for a worker that found the queue empty.
OUTCOME_COLOURS = {
    Verdict.DONE: "#009E73",
    Verdict.ALREADY_DONE: "#56B4E9",
    Verdict.RETRY: "#E69F00",
    Verdict.DEAD: "#D55E00",
    Verdict.CONFIG: "#CC79A7",
    Verdict.EMPTY: "#8C8C8C",
}
OUTCOME_NAMES = {
    Verdict.DONE: "done",
    Verdict.ALREADY_DONE: "already done (a copy, acked)",
    Verdict.RETRY: "retried",
    Verdict.DEAD: "dead-lettered",
    Verdict.CONFIG: "configuration error",
    Verdict.EMPTY: "found the queue empty",
}
_STARTUP = "#D9D9D9"
_MEAN, _BAND = "#0072B2", "#56B4E9"
_DPI = 100


def timeline_png(attempts: list[Attempt], started_at: float, parallelism: int) -> bytes:
    """One bar per attempt on its worker's lane: start-up, then processing with storing apart,
    coloured by outcome."""
    lanes = max([parallelism, *(attempt.lane + 1 for attempt in attempts)])
    figure = _figure(10, min(1.8 + 0.45 * lanes, 12))
    axes = figure.add_subplot()
    bars: dict[tuple[int, str, Verdict], list[tuple[float, float]]] = defaultdict(list)
    for attempt, begin in zip(attempts, attempt_begins(attempts), strict=True):
        for style, start, end in _segments(attempt, begin):
            bars[attempt.lane, style, attempt.outcome].append(
                (start - started_at, max(end - start, 0.0))
            )
    for (lane, style, outcome), spans in bars.items():
        colour = _STARTUP if style == "startup" else OUTCOME_COLOURS[outcome]
        axes.broken_barh(
            spans,
            (lane - 0.35, 0.7),
            facecolors=colour,
            edgecolors="#333333" if style == "store" else "white",
            linewidth=0.5,
            hatch="////" if style == "store" else None,
        )
    axes.set_yticks(range(lanes), [f"slot {lane + 1}" for lane in range(lanes)])
    axes.set_ylim(lanes - 0.5, -0.5)
    axes.set_xlabel("time since the run started (s)")
    axes.set_ylabel("worker")
    axes.set_xlim(left=0)
    axes.grid(axis="x", color="#DDDDDD", linewidth=0.6)
    axes.set_axisbelow(True)
    axes.legend(
        handles=_timeline_legend({attempt.outcome for attempt in attempts}),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.22),
        ncols=3,
    )
    return _png(figure)


def _timeline_legend(outcomes: set[str]) -> list[Patch]:
    """Start-up, the outcomes that occur, and storing."""
    from matplotlib.patches import Patch

    legend = [Patch(facecolor=_STARTUP, label="start-up (process start to message taken)")]
    legend += [
        Patch(facecolor=OUTCOME_COLOURS[outcome], label=OUTCOME_NAMES[outcome])
        for outcome in OUTCOME_COLOURS
        if outcome in outcomes
    ]
    legend.append(Patch(facecolor="white", edgecolor="#333333", hatch="////", label="storing"))
    return legend


def curves_pngs(curves: Sequence[Curve]) -> list[bytes]:
    """Small multiples of the curves, CURVES_PER_FIGURE to a figure, all on one temperature
    scale, so that curves side by side compare at a glance; but those `apart` names."""
    outlying = apart(curves)
    values = [np.concatenate([c.low, c.high]) for c in curves if c.name not in outlying]
    every = np.concatenate(values or [np.array([])])
    finite = every[np.isfinite(every)]
    scale = (float(finite.min()), float(finite.max())) if finite.size else None
    return [
        _curves_png(curves[start : start + CURVES_PER_FIGURE], scale, outlying)
        for start in range(0, len(curves), CURVES_PER_FIGURE)
    ]


_APART = 10.0  # reaching further than this many typical ranges beyond the others' values


def apart(curves: Sequence[Curve]) -> list[str]:
    """The curves whose values lie so far beyond the others' that on one shared scale the
    others would be flat lines: they are drawn on scales of their own."""
    ranges = [(np.nanmin(c.low), np.nanmax(c.high)) for c in curves if not np.isnan(c.low).all()]
    if len(ranges) < 2:
        return []
    lows, highs = (np.array(side) for side in zip(*ranges, strict=True))
    low, high = float(np.median(lows)), float(np.median(highs))
    typical = max(float(np.median(highs - lows)), 1.0)
    return [
        c.name
        for c in curves
        if not np.isnan(c.low).all()
        and (
            np.nanmax(c.high) > high + _APART * typical or np.nanmin(c.low) < low - _APART * typical
        )
    ]


def curve_png(curve: Curve) -> bytes:
    """One result's hourly mean with its min-max band."""
    figure = _figure(10, 4.2)
    axes = figure.add_subplot()
    _draw_curve(axes, curve, small=False)
    axes.set_xlabel("time")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2)
    return _png(figure)


def _curves_png(
    curves: Sequence[Curve], scale: tuple[float, float] | None, apart: list[str]
) -> bytes:
    rows = -(-len(curves) // _COLUMNS)
    figure = _figure(10, 0.7 + 2.3 * rows)
    grid = figure.subplots(rows, _COLUMNS, squeeze=False)
    for axes, curve in zip(grid.flat, curves, strict=False):
        _draw_curve(axes, curve, small=True)
        if curve.name in apart:
            axes.set_title(f"{axes.get_title(loc='left')} (own scale)", fontsize=8, loc="left")
        elif scale is not None:
            margin = max((scale[1] - scale[0]) * 0.05, 0.5)
            axes.set_ylim(scale[0] - margin, scale[1] + margin)
    for axes in grid.flat[len(curves) :]:
        axes.set_axis_off()
    handles, labels = grid.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=2)
    return _png(figure)


def _draw_curve(axes: Axes, curve: Curve, small: bool) -> None:
    """The mean as a line and min-max as a band; an empty hour (NaN) leaves a gap in both."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    axes.fill_between(curve.hours, curve.low, curve.high, color=_BAND, alpha=0.45, linewidth=0,
                      label="hourly min to max")  # fmt: skip
    axes.plot(curve.hours, curve.mean, color=_MEAN, linewidth=0.9 if small else 1.2,
              label="hourly mean")  # fmt: skip
    if len(curve.hours) == 1:  # give one hour some width, or the date locator finds no ticks
        hour = np.timedelta64(1, "h")
        axes.set_xlim(curve.hours[0] - hour, curve.hours[0] + hour)
    locator = AutoDateLocator(maxticks=6 if small else 10)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axes.xaxis.get_offset_text().set_fontsize(7 if small else 9)
    empty = f", {curve.empty_hours} without readings" if curve.empty_hours else ""
    details = f"{len(curve.hours)} hours{empty}"
    title = f"{curve.name}\n{details}" if small else f"{curve.name} ({details})"
    axes.set_title(title, fontsize=8 if small else 11, loc="left")
    axes.set_ylabel("temperature (°C)", fontsize=8 if small else 10)
    axes.tick_params(labelsize=7 if small else 9)
    axes.grid(color="#E5E5E5", linewidth=0.6)


def _segments(attempt: Attempt, begin: float) -> list[tuple[str, float, float]]:
    """(style, start, end) of the attempt's parts: startup, work, store."""
    if attempt.took is None:  # no message taken, or no word from the worker: one plain bar
        return [("work", begin, attempt.finished)]
    segments = [("startup", begin, attempt.took), ("work", attempt.took, attempt.finished)]
    if "store" in attempt.phases:
        store_start = attempt.took + attempt.phases.get("read", 0) + attempt.phases.get("task", 0)
        segments.append(("store", store_start, store_start + attempt.phases["store"]))
    return segments


def require_matplotlib() -> None:
    """Raise ConfigError, saying how to install it, when matplotlib cannot be imported: found
    without importing it, so a run that will draw can say so before its work."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError(
            "The charts are drawn with matplotlib, which is not installed here: install the "
            "kit with its report extra (pip install 'amqp-jobkit[report]')."
        )


def _figure(width: float, height: float) -> Figure:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), facecolor="white", layout="constrained")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, facecolor="white")
    return buffer.getvalue()
