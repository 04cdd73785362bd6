"""`jobkit status` and `jobkit publish` over a large batch done: the ledger read in full, then
kept, each item's input checked against its record."""

from __future__ import annotations

import os

from bench.figures import JOBKIT
from bench.harness import Bench, run_process
from jobkit_publisher.queue.published import Published, write_published
from jobkit_worker.done_records import make_record
from jobkit_worker.names import record_name
from jobkit_worker.storage.base import Entry
from jobkit_worker.storage.local import LocalStore


def status_at_scale(bench: Bench, items: int) -> dict[str, float]:
    """Seconds of `jobkit status --json` over `items` done items (an input and a small output
    each): the first time, which reads every success record, and the next, which reads none;
    then of `jobkit publish`, which finds every item done from its current input."""
    out, inputs = bench.root / f"ledger-{items}", bench.root / f"ledger-{items}-in"
    out.mkdir()
    inputs.mkdir()
    names = [f"item{index:06d}" for index in range(items)]
    for name in names:  # written as a worker writes them, without its fsyncs
        source = inputs / name
        source.write_bytes(name.encode())
        listed = os.stat(source)
        result = f"{name}: done\n".encode()
        output = out / f"{name}.out"
        output.write_bytes(result)
        info = os.stat(output)
        record = make_record(
            name,
            bench.settings.queue,
            "bench",
            name.encode(),
            Entry(listed.st_size, f"{listed.st_size}:{listed.st_mtime_ns}", None),
            {output.name: result},
            {output.name: f"{info.st_size}:{info.st_mtime_ns}"},
            deliveries=1,
            seconds=0.0,
        )
        (out / record_name(name)).write_bytes(record.to_bytes())
    write_published(LocalStore(out), bench.settings.queue, Published(set(names)))
    (inputs / ".names").write_text("".join(f"{name}\n" for name in names))
    env = {**bench.env(out), "OUTPUT_URL": str(out), "INPUT_URL": str(inputs)}
    first = run_process([JOBKIT, "status", "--json"], env).seconds
    kept = run_process([JOBKIT, "status", "--json"], env).seconds
    publish = run_process([JOBKIT, "publish", "--json", "--from", str(inputs / ".names")], env)
    return {"status_first_s": first, "status_kept_s": kept, "publish_done_s": publish.seconds}
