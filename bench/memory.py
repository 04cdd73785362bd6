"""`python -m bench.memory ours|seed FILE OUTDIR`: a worker's memory for one item, as JSON.

Prints the resident set right after the imports a worker makes and its peak while doing the
item (read, aggregate, write), both in bytes, from /proc/self/status.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def main(engine: str, source: Path, out_dir: Path) -> None:
    """Import what the engine's worker imports, then do one item; print the two figures."""
    if engine == "ours":
        import jobkit_worker.__main__
        from jobkit_worker.startup import prepare_process

        prepare_process()  # as the worker's main() does, before the task's imports
        import jobkit_worker.builtin.aggregate  # imported by the worker when its first item arrives
        from jobkit_worker.storage.local import LocalStore

        after_imports = _status("VmRSS")
        inputs, outputs = LocalStore(source.parent), LocalStore(out_dir)
        inputs.size(source.name)
        for name, data in jobkit_worker.builtin.aggregate.aggregate_item(
            source.name, inputs.read(source.name)
        ).items():
            outputs.write(name, data)
    else:
        import pika  # noqa: F401 (the seed's worker imports it)

        from bench.seed import seed_aggregate

        after_imports = _status("VmRSS")
        seed_aggregate(source, out_dir / "seed_aggregated.csv")
    print(json.dumps({"after_imports": after_imports, "peak": _status("VmHWM")}))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
