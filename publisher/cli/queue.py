"""`jobkit` commands on the queue: publish, depth, status, dead letters, purge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from jobkit_publisher.cli.exits import CommandExit
from jobkit_publisher.cli.options import JsonOption
from jobkit_publisher.cli.terminal import err, how_to_run, load_settings, out, print_json
from jobkit_worker.errors import ConfigError

if TYPE_CHECKING:
    from jobkit_publisher.queue.batch import BatchResult


def publish(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Items to publish; default: every *.csv under INPUT_URL."),
    ] = None,
    source: Annotated[
        typer.FileBinaryRead | None,
        typer.Option(
            "--from",
            help="Also publish the items in this file ('-': standard input), one a line: each "
            "line is a name exactly as written, blanks and '#' included, but for its line end "
            "('\\n' or '\\r\\n'); empty lines are skipped. Items need not be files (see "
            "NO_INPUT).",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Publish also the items done and those already published to the queue; they "
            "are done again, even those done.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Publish one persistent message per item and wait until the broker confirms each. Items
    are file names under INPUT_URL, or anything at all for a task run with NO_INPUT (parameters,
    key ranges, frame numbers); they are published as given, without looking them up. What the
    broker confirmed is kept with the outputs, so 'jobkit status' can account for every item.
    As make does, it skips the items done whose input is unchanged since (by size and time, or
    the store's MD5, else its SHA-256) and those published before and not done (queued, held
    or dead-lettered), unless --force is given; two publishers of one queue take turns. Names
    no store can keep are each named with why, the rest are published, and the exit is 3.

    Example: jobkit publish temperature1.csv temperature2.csv
    """
    from jobkit_publisher.queue.batch import check_items, find_inputs, publish_batch
    from jobkit_publisher.queue.publish import PublishInterrupted, read_items
    from jobkit_publisher.queue.reconcile import some_names

    with load_settings() as settings:
        items = list(names or []) + (read_items(source) if source else [])
        if not items and settings.no_input:
            raise ConfigError(
                "Nothing to publish: with NO_INPUT, give the items as arguments or with --from."
            )
        if not items:
            found = find_inputs(settings)
            for why, left_out in found.left_out.items():
                files = f"{len(left_out)} {'entry' if len(left_out) == 1 else 'entries'}"
                err.print(f"Left out {files}, {why}: {some_names(left_out)}.", markup=False)
            items = found.items
        if not items:
            raise ConfigError(
                f"No *.csv files under INPUT_URL {settings.input_url!r}; make samples with "
                f"'{how_to_run('data', make_target='data')}' or set INPUT_URL."
            )
        items, refused = check_items(items)
        for why in refused:
            err.print(f"Not published: {why}", markup=False)
        if not items:
            raise typer.Exit(int(CommandExit.NEEDS_YOU))
        try:
            result = publish_batch(settings, items, force, lambda: _say_waiting(settings.queue))
        except PublishInterrupted as exc:
            unsure = len(items) - len(exc.confirmed) - len(exc.unsent)
            err.print(
                f"Interrupted: {len(exc.confirmed)} of {_items(len(items))} were published and "
                f"confirmed, {unsure} sent without a confirm (recorded as unconfirmed); "
                f"'{how_to_run('publish', make_target='publish')}' again publishes the rest.",
                markup=False,
            )
            raise typer.Exit(128 + exc.signum) from None
    _print_batch(result, settings.queue, as_json)
    if refused:
        err.print(
            f"error: {len(refused)} item{'' if len(refused) == 1 else 's'} not published, each "
            "named above with why; rename or fix them and publish again.",
            markup=False,
        )
        raise typer.Exit(int(CommandExit.NEEDS_YOU))


def _print_batch(result: BatchResult, queue: str, as_json: bool) -> None:
    from jobkit_publisher.queue.reconcile import some_names, some_reasons

    if as_json:
        print_json(
            {
                "queue": queue,
                "confirmed": len(result.confirmed),
                "done": result.done,
                "waiting": result.waiting,
                "redone": result.redone,
                "sent_again": result.again,
                "depth": result.depth,
            }
        )
        return
    out.print(
        f"Published {_items(len(result.confirmed))} to {queue!r}, each confirmed by the "
        f"broker; {result.depth} ready in the queue.",
        markup=False,
    )
    if result.redone:
        out.print(
            f"Of those, {_items(len(result.redone))} had been done and will be done again "
            f"({some_reasons(result.redone)}).",
            markup=False,
        )
    if result.again:
        out.print(
            f"{_items(len(result.again))} ({some_names(result.again)}) had been sent before "
            "without a confirm and were sent again: one may be queued twice, and a worker that "
            "takes a copy of an item already done acks it without doing it again.",
            markup=False,
        )
    if result.done:
        out.print(
            f"Skipped {_items(len(result.done))} done, with inputs unchanged since "
            f"({some_names(result.done)}).",
            markup=False,
        )
    if result.waiting:
        out.print(
            f"Skipped {_items(len(result.waiting))} published to {queue!r} before and "
            f"not done ({some_names(result.waiting)}): queued, held by a worker or "
            "dead-lettered ('jobkit status' says which).",
            markup=False,
        )
    if result.done or result.waiting:
        out.print("--force publishes the skipped items too, to be done again.", markup=False)


def _say_waiting(queue: str) -> None:
    err.print(f"Waiting for another 'jobkit publish' to {queue!r} to finish ...", markup=False)


def _items(count: int) -> str:
    return f"{count} item{'' if count == 1 else 's'}"


def depth() -> None:
    """Print how many items are ready in the work queue (not counting those being worked on).

    Example: jobkit depth
    """
    from jobkit_publisher.queue.status import read_depth

    with load_settings() as settings:
        out.print(read_depth(settings))


def status(
    as_json: JsonOption = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Check every output and input by a digest of its bytes, read now, not by the "
            "size and time the store lists (which an edit by 'cp -p' or 'rsync -t' keeps).",
        ),
    ] = False,
) -> None:
    """Show the queue's depth, every dead letter with its reason, the outputs written, and
    whether every published item is done, dead-lettered or queued. An item is done while its
    outputs are those its success record names and its input the one it was made from.

    Exits 0 when every item published is done, 1 while some are queued or held, 3 when
    some are dead-lettered, 4 when not all are accounted for.

    Example: jobkit status --verify
    """
    from jobkit_publisher.cli.display import print_status
    from jobkit_publisher.cli.exits import status_exit
    from jobkit_publisher.queue.status import read_status

    with load_settings() as settings:
        snapshot = read_status(settings, verify)
    if as_json:
        print_json(
            {
                "queue": snapshot.queue,
                "ready": snapshot.ready,
                "reconciliation": snapshot.reconciliation.to_dict(),
                "dead_letters": [vars(letter) for letter in snapshot.dead_letters],
                "outputs": snapshot.outputs,
            }
        )
    else:
        print_status(out, snapshot, settings.output_url)
    raise typer.Exit(int(status_exit(snapshot.reconciliation)))


dead_app = typer.Typer(
    no_args_is_help=True,
    help="The dead-letter queue: items that can never succeed, with why.\n\n"
    "Example: jobkit dead list",
)


@dead_app.command("list")
def dead_list(as_json: JsonOption = False) -> None:
    """Show every dead letter with its reason, deliveries and the broker's x-death history; they
    stay in the queue.

    Example: jobkit dead list --json
    """
    from jobkit_publisher.cli.display import print_dead_letters
    from jobkit_publisher.queue.dead import list_dead_letters
    from jobkit_worker.broker import dead_queue_name

    with load_settings() as settings:
        letters = list_dead_letters(settings)
    if as_json:
        print_json({"dead_letters": [vars(letter) for letter in letters]})
    elif letters:
        print_dead_letters(out, letters, history=True)
    else:
        out.print(f"No dead letters in {dead_queue_name(settings.queue)!r}.", markup=False)


@dead_app.command("requeue")
def dead_requeue(
    names: Annotated[
        list[str] | None, typer.Argument(help="Items to put back; default: all of them.")
    ] = None,
) -> None:
    """Put dead letters back on the work queue, after fixing what made them fail.

    Example: jobkit dead requeue temperature3.csv
    """
    from jobkit_publisher.queue.dead import requeue_dead_letters
    from jobkit_worker.broker import dead_queue_name

    with load_settings() as settings:
        moved = requeue_dead_letters(settings, set(names) if names else None)
    missing = sorted(set(names or []) - set(moved))
    out.print(f"Requeued {_items(len(moved))} to {settings.queue!r}.", markup=False)
    if missing:
        dead_queue = dead_queue_name(settings.queue)
        err.print(f"error: not in {dead_queue!r}: {', '.join(missing)}", markup=False)
        raise typer.Exit(int(CommandExit.CONFIG))


def purge(
    dead: Annotated[
        bool, typer.Option("--dead", help="Purge the dead-letter queue instead.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
) -> None:
    """Delete every message waiting in the work queue (or, with --dead, the dead-letter queue).
    Purging the work queue also starts a new batch: what was published is no longer expected;
    it waits for a publish to the queue under way, and --dead for the readers of dead letters.

    Example: jobkit purge --yes
    """
    from jobkit_publisher.queue.batch import purge as purge_batch
    from jobkit_worker.broker import dead_queue_name

    with load_settings() as settings:
        queue = dead_queue_name(settings.queue) if dead else settings.queue
        if not yes:
            typer.confirm(f"Delete every message in {queue!r}?", abort=True)
        purged = purge_batch(settings, dead, lambda: _say_waiting(settings.queue))
    out.print(f"Purged {purged} messages from {queue!r}.", markup=False)
