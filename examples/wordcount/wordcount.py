#!/usr/bin/env python3
"""Count the lines, words and characters of a text file, as `wc` does, into a JSON file.

    wordcount.py INPUT OUTPUT_DIR    writes OUTPUT_DIR/<INPUT's name>.counts.json

A plain command-line program, standard library only: it knows nothing of queues or of the kit.
Exits 3 when INPUT is not UTF-8 text (no second try can fix that), 2 on wrong usage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def counts(text: str) -> dict[str, int]:
    """Lines (newlines, as `wc -l`), words and characters of `text`."""
    return {"lines": text.count("\n"), "words": len(text.split()), "characters": len(text)}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: wordcount.py INPUT OUTPUT_DIR", file=sys.stderr)
        return 2
    source, out_dir = Path(argv[1]), Path(argv[2])
    try:
        text = source.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        print(
            f"{source.name} is not UTF-8 text ({exc.reason} at byte {exc.start})", file=sys.stderr
        )
        return 3
    result = json.dumps(counts(text), sort_keys=True) + "\n"
    (out_dir / f"{source.name}.counts.json").write_text(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
