"""`jobkit-worker`: take one item from the queue, run the task on it, store, ack, exit.

Starting fast is most of a short item's cost, so only what every run needs is imported here:
the built-in task (pyarrow, numpy) is imported when the first item arrives.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from typing import NoReturn, TextIO

from jobkit_worker.consumer import do_named, item_body, take_items
from jobkit_worker.errors import EXIT_CODE_HELP, JobkitError
from jobkit_worker.interruption import Interrupted, worker_interruption
from jobkit_worker.outcome import Outcome, Verdict, drain_exit_code, end_line, notice_line
from jobkit_worker.ownership import claim_location
from jobkit_worker.scratch import release
from jobkit_worker.settings import Settings, settings_help, with_task
from jobkit_worker.startup import prepare_process, stop_now
from jobkit_worker.storage.base import open_store
from jobkit_worker.tasks import load_task

log = logging.getLogger("worker")

DESCRIPTION = """\
Take exactly one item from the work queue, read the input file it names (with
--no-input, the item is the message body itself), run the task on it, store the
task's outputs and a success record <item>.done.json, ack the message only once
they are stored, and exit. An empty queue is a clean exit 0. The outcome is
printed as one JSON line on stdout; logs go to stderr.

The task is the built-in hourly aggregation of a temperature CSV
(<name>_aggregated.csv) unless TASK names another (a Python function) or
TASK_COMMAND gives a program to run.

With --drain, take items one at a time the same way until the queue is empty,
printing one line per item; exit 0 if all were done, 3 if any was dead-
lettered, 1 after a transient failure (that item went back to the queue)."""

# Built on import: a worker forked from an importing template process does not build it again.
EPILOG = f"{settings_help()}\n\n{EXIT_CODE_HELP}"


def main(argv: list[str] | None = None) -> int:
    """Run one worker; returns the exit code of the contract."""
    parser = argparse.ArgumentParser(
        prog="jobkit-worker",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--drain",
        action="store_true",
        help="take items until the queue is empty, not just one (for short items)",
    )
    parser.add_argument(
        "--stdin",
        action="store_true",
        help="do the item named on standard input and take no message (for amqp-consume, "
        "which acks the message only when this exits 0)",
    )
    parser.add_argument(
        "--task", help="the task: a registered name or package.module:function (as TASK)"
    )
    parser.add_argument(
        "--command", help="a program to run per item instead (as TASK_COMMAND)", metavar="CMD"
    )
    parser.add_argument(
        "--no-input",
        action="store_true",
        help="items are not files: the task gets the message body alone (as NO_INPUT=true)",
    )
    parser.add_argument(
        "--outcome-fd",
        type=int,
        metavar="FD",
        help="print the outcome lines to this open descriptor, not stdout, which then carries "
        "only what the task prints (a runner's: nothing a task prints passes for an outcome)",
    )
    parser.add_argument(
        "--turn-fd",
        type=int,
        metavar="FD",
        help="connect and declare, then wait for a byte on this open socket before taking "
        "anything (ending, taking nothing, at its end of file), and write a byte to it after "
        "each outcome line (a runner's: a worker started ahead takes its item the moment a "
        "slot frees, which one settling its item frees before it exits)",
    )
    args = parser.parse_args(argv)
    prepare_process()
    with worker_interruption.installed():
        try:
            if args.outcome_fd is None:
                return _run(args, sys.stdout)
            with os.fdopen(args.outcome_fd, "w", closefd=False) as outcomes:
                code = _run(args, outcomes)
                print(end_line(code), file=outcomes, flush=True)
                return code
        finally:
            # While the signals are still handled: a runner's SIGTERM once they are not would
            # end the process before its temporaries' locks are removed.
            with worker_interruption.deferred():
                release()


def _run(args: argparse.Namespace, channel: TextIO) -> int:
    outcomes: list[Outcome] = []

    def report(line: str) -> None:
        print(line, file=channel, flush=True)

    def notice(text: str) -> None:
        report(notice_line(text))

    try:
        settings = Settings.from_env(with_task(os.environ, args.task, args.command, args.no_input))
        _configure_logging(settings.log_level)
        inputs = open_store(settings.input_url, settings, on_wait=notice)
        outputs = open_store(settings.output_url, settings, on_wait=notice)
        # A bad location, credentials or task: exit 2 before any message is taken.
        if not settings.no_input:
            inputs.check()
        outputs.check(writable=True)
        claim_location(outputs, settings.queue)
        task = load_task(settings)
        if args.stdin:
            item = item_body(sys.stdin.buffer.read())  # amqp-consume pipes the body as it is
            outcomes.append(do_named(item, settings, task, inputs, outputs))
            report(outcomes[-1].to_json())
        for outcome in (
            []
            if args.stdin
            else take_items(settings, task, inputs, outputs, args.drain, notice, args.turn_fd)
        ):
            report(outcome.to_json())
            outcomes.append(outcome)
            if args.turn_fd is not None:
                with contextlib.suppress(OSError):  # a runner that stopped listening
                    os.write(args.turn_fd, b"\n")
    except JobkitError as exc:
        _configure_logging("INFO")
        log.error("%s", exc)
        outcome = Outcome(Verdict.of_exit(exc.exit_code), reason=str(exc))
        report(outcome.to_json())
        return int(outcome.code)
    except Interrupted as exc:  # holding no message: nothing to give back
        outcome = Outcome(Verdict.RETRY, reason=f"stopped by {exc.signal_name}; no item was held")
        report(outcome.to_json())
        return int(outcome.code)
    return int(drain_exit_code(outcomes))


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    # The kit reports pika's failures itself, in one line; pika's own logs are multi-line noise.
    logging.getLogger("pika").setLevel(logging.DEBUG if level == "DEBUG" else logging.CRITICAL)


def run() -> NoReturn:
    """The `jobkit-worker` command: run one worker, then end the process with its exit code."""
    stop_now(main())


if __name__ == "__main__":
    run()
