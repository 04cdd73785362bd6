"""`python -m bench` (`make bench`): every figure beside its peer's (the AKS blog's pandas
worker, a warm Celery worker, GNU parallel, xargs, no queue at all), measured in one run.

Generates its own data in a temporary directory, uses its own `bench-<uuid>` queue, removes
both, prints one table and writes the same to bench/results.json. A few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from bench import costs as cost
from bench import programs
from bench.against_celery import celery_worker, measure
from bench.against_celery import figures as against_celery
from bench.figures import (
    Figure,
    aggregation,
    drain,
    end_to_end,
    memory,
    per_item,
    publishing,
)
from bench.harness import bench_run
from bench.ledger import status_at_scale
from jobkit_publisher.data.samples import ROWS_PER_YEAR, write_samples
from jobkit_worker.storage.local import LocalStore

RESULTS = Path(__file__).resolve().parent / "results.json"
YEAR_FILES = 6
QUARTER_FILES = 48  # the batch of the comparison with Celery
SMALL_FILES, SMALL_ROWS, SMALL_SAMPLE = 1_000, 1_440, 100  # a day of readings each
DAY_FILES = 2_000  # the many-small-items comparison with Celery
PROGRAM_ITEMS = 20_000
PUBLISHED, SEED_PUBLISHED = 100_000, 5_000
ROUNDS = 7
LEDGER_ITEMS = 100_000


def main() -> int:
    """Measure everything, print the table, write the JSON."""
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    figures: list[Figure] = []
    costs: dict[str, float] = {}
    with bench_run() as bench:
        _say("writing sample data")
        years = _samples(bench.root / "year", YEAR_FILES, ROWS_PER_YEAR)
        smalls = _samples(bench.root / "small", SMALL_FILES, SMALL_ROWS)
        year, out = bench.root / "year" / years[0], bench.root / "out"
        _say("aggregation")
        figure, found = aggregation(year, out, ROUNDS)
        figures.append(figure)
        costs.update(found)
        _say("one item per process")
        figure, found = per_item(bench, bench.root / "year", years[0], ROUNDS)
        figures.append(figure)
        costs.update(found)
        _say("drain mode")
        figures.append(drain(bench, bench.root / "small", smalls, SMALL_SAMPLE, 3))
        _say("publishing")
        figures.append(publishing(bench, PUBLISHED, SEED_PUBLISHED))
        _say("memory")
        figure, found = memory(year, out, 3)
        figures.append(figure)
        costs.update(found)
        _say("end to end")
        figures.append(end_to_end(bench, bench.root / "year", years, 5))
        figures.append(end_to_end(bench, bench.root / "year", years, 5, drain=True))
        _say("against a warm Celery worker")
        quarters = _samples(bench.root / "quarter", QUARTER_FILES, ROWS_PER_YEAR // 4)
        days = _samples(bench.root / "day", DAY_FILES, SMALL_ROWS)
        with celery_worker(bench) as celery:
            on_days = measure(bench, celery, bench.root / "day", days, 3, per_item=False)
            on_quarters = measure(bench, celery, bench.root / "quarter", quarters, ROUNDS)
            on_years = measure(bench, celery, bench.root / "year", years, ROUNDS)
        figures.extend(against_celery(on_days, on_quarters, on_years))
        _say("a program per item, beside GNU parallel and xargs")
        nothing = [f"item{index:06d}" for index in range(PROGRAM_ITEMS)]
        figures.extend(programs.against_peers(bench, nothing, bench.root, "true"))
        figures.extend(programs.against_peers(bench, days, bench.root / "day", "wc -l {input}"))
        _say("a program's output: many lines, many files, one big file")
        figures.append(programs.chatty(bench))
        figures.append(programs.many_outputs(bench))
        figures.append(programs.big_output(bench))
        _say("costs per item")
        costs.update(cost.start_up(bench, 5))
        costs.update(cost.broker_round_trips(bench, 500))
        costs.update(cost.small_item(bench.root / "small" / smalls[0], out, ROUNDS))
        _say(f"jobkit status over {LEDGER_ITEMS:,} items done")
        costs.update(status_at_scale(bench, LEDGER_ITEMS))
    model = _model(costs, figures)
    total = time.perf_counter() - started
    results = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg()[0],
        },
        "figures": [
            {**vars(figure), "ratio": figure.ratio, "ratio_shown": figure.ratio_text}
            for figure in figures
        ],
        "costs": costs,
        "model": model,
        "seconds": total,
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(_table(figures, costs, model, total))
    return 0


def _samples(directory: Path, files: int, rows: int) -> list[str]:
    """Write `files` sample inputs of `rows` readings each into a new `directory`."""
    directory.mkdir()
    return write_samples(LocalStore(directory), files, rows, 0)


def _model(costs: dict[str, float], figures: list[Figure]) -> dict[str, dict[str, float]]:
    sizes = {"year": YEAR_FILES, "small": SMALL_FILES, "sample": SMALL_SAMPLE}
    predicted = cost.predictions(costs, sizes, os.cpu_count() or 1)
    drained, end = figures[2], figures[5]
    measured = {
        "process_per_small_item_s": drained.seed * SMALL_SAMPLE / SMALL_FILES,
        "drain_small_items_s": drained.ours,
        "run_p2_year_files_s": end.ours,
    }
    return {key: {"predicted": predicted[key], "measured": measured[key]} for key in predicted}


def _table(
    figures: list[Figure],
    costs: dict[str, float],
    model: dict[str, dict[str, float]],
    total: float,
) -> str:
    rows = [("figure", "ours", "peer", "ratio", "target", "met")]
    for figure in figures:
        rows.append(
            (
                figure.name,
                _value(figure.ours, figure.unit),
                _value(figure.seed, figure.unit),
                figure.ratio_text,
                figure.target,
                "yes" if figure.met else "NO",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines += ["", *(f"{figure.name}: {figure.note}" for figure in figures if figure.note)]
    lines += ["", "Costs per item: " + ", ".join(f"{k} {v:.4g}" for k, v in costs.items())]
    lines += ["Model check (docs/scale.md), predicted vs measured:"]
    lines += [f"  {k}: {v['predicted']:.2f} s vs {v['measured']:.2f} s" for k, v in model.items()]
    lines += [f"Whole benchmark: {total:.0f} s; written to {RESULTS.relative_to(Path.cwd())}."]
    return "\n".join(lines)


def _value(value: float, unit: str) -> str:
    if unit == "msg/s":
        return f"{value:,.0f} msg/s"
    if unit == "x":
        return f"{value:.2f}x file"
    if unit in ("items/s", "MB"):
        return f"{value:,.0f} {unit}"
    if value < 0.01:
        return f"{value * 1000:.3f} ms"
    return f"{value:.3f} s"


def _say(what: str) -> None:
    print(f"bench: {what} ...", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
