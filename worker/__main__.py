"""`python -m worker`: take one item from the queue, do it, store the result, ack, exit."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from worker.aggregate import aggregate_item
from worker.consumer import Outcome, do_named, take_one
from worker.errors import EXIT_CODE_HELP, JobkitError
from worker.settings import SETTINGS_HELP, Settings
from worker.storage import open_store

log = logging.getLogger("worker")

DESCRIPTION = """\
Take exactly one item (a file name) from the work queue, aggregate that file to hourly
mean, std, max and min, write <name>_aggregated.csv, ack the message only once the result
is stored, and exit. An empty queue is a clean exit 0. The outcome is printed as one JSON
line on stdout; logs go to stderr."""


def main(argv: list[str] | None = None) -> int:
    """Run one worker; returns the exit code of the contract."""
    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description=DESCRIPTION,
        epilog=f"{SETTINGS_HELP}\n\n{EXIT_CODE_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--stdin",
        action="store_true",
        help="do the item named on standard input and take no message (for amqp-consume, "
        "which acks the message only when this exits 0)",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
        _configure_logging(settings.log_level)
        inputs = open_store(settings.input_url, settings)
        outputs = open_store(settings.output_url, settings)
        for store in (inputs, outputs):
            store.check()  # a bad location or credentials: exit 2 before any message is taken
        if args.stdin:
            # amqp-consume pipes the message body as it is; `echo name |` adds a newline.
            item = sys.stdin.buffer.read().removesuffix(b"\n")
            outcome = do_named(item, aggregate_item, inputs, outputs)
        else:
            outcome = take_one(settings, aggregate_item, inputs, outputs)
    except JobkitError as exc:
        _configure_logging("INFO")
        log.error("%s", exc)
        outcome = Outcome(exc.exit_code, reason=str(exc))
    print(outcome.to_json(), flush=True)
    return int(outcome.code)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    # The kit reports pika's failures itself, in one line; pika's own logs are multi-line noise.
    logging.getLogger("pika").setLevel(logging.DEBUG if level == "DEBUG" else logging.CRITICAL)


if __name__ == "__main__":
    sys.exit(main())
