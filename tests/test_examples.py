"""The worked example in examples/wordcount: a plain program, and the same count as a function."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import ROOT, jobkit, settled_depths

pytestmark = pytest.mark.rabbitmq

EXAMPLE = ROOT / "examples" / "wordcount"
TEXTS = sorted(path.name for path in (EXAMPLE / "texts").iterdir())
WAYS = {
    "program": [
        "--command",
        f"{sys.executable} {EXAMPLE / 'wordcount.py'} {{input}} {{output_dir}}",
    ],
    "function": ["--task", "wordcount_task:count_words"],
}


@pytest.mark.parametrize("way", sorted(WAYS))
def test_the_word_count_example_counts_every_text_as_the_readme_shows(
    env: dict[str, str], way: str
) -> None:
    example = {**env, "INPUT_URL": str(EXAMPLE / "texts"), "PYTHONPATH": str(EXAMPLE)}
    published = jobkit(example, "publish", "--from", "-", stdin="\n".join(TEXTS) + "\n")
    assert published.returncode == 0, published.stderr

    result = jobkit(example, "run", "--parallelism", "2", *WAYS[way])

    assert result.returncode == 0, result.stdout + result.stderr
    for name in TEXTS:
        text = (EXAMPLE / "texts" / name).read_text()
        counts = json.loads(Path(env["OUTPUT_URL"], f"{name}.counts.json").read_text())
        assert counts == {
            "lines": text.count("\n"),
            "words": len(text.split()),
            "characters": len(text),
        }
    assert settled_depths(env["BROKER_URL"], env["QUEUE"], (0, 0)) == (0, 0)
