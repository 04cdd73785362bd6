"""`jobkit status` over a large batch: its time with the ledger read in full, then kept."""

from __future__ import annotations

import os

from bench.figures import JOBKIT
from bench.harness import Bench, run_process
from publisher.queue.published import Published, write_published
from worker.done_records import make_record
from worker.names import record_name
from worker.storage.local import LocalStore


def status_at_scale(bench: Bench, items: int) -> dict[str, float]:
    """Seconds of `jobkit status --json` over `items` done items (a small output each): the
    first time, which reads every success record, and the next, which reads none."""
    out = bench.root / f"ledger-{items}"
    out.mkdir()
    names = [f"item{index:06d}" for index in range(items)]
    for name in names:  # written as a worker writes them, without its fsyncs
        result = f"{name}: done\n".encode()
        output = out / f"{name}.out"
        output.write_bytes(result)
        info = os.stat(output)
        record = make_record(
            name,
            bench.settings.queue,
            "bench",
            name.encode(),
            None,
            {output.name: result},
            {output.name: f"{info.st_size}:{info.st_mtime_ns}"},
            deliveries=1,
            seconds=0.0,
        )
        (out / record_name(name)).write_bytes(record.to_bytes())
    write_published(LocalStore(out), bench.settings.queue, Published(set(names)))
    env = {**bench.env(out), "OUTPUT_URL": str(out), "NO_INPUT": "true"}
    first = run_process([JOBKIT, "status", "--json"], env).seconds
    kept = run_process([JOBKIT, "status", "--json"], env).seconds
    return {"status_first_s": first, "status_kept_s": kept}
