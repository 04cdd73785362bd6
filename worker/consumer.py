"""Take items from the queue one at a time, run the task on each, store the outputs, then ack.

One item and exit is the default; drain mode repeats the same step until the queue is empty.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Callable, Iterator

from jobkit_worker.broker import DELIVERY_LIMIT, REDO_HEADER, Delivery, Session, dead_queue_name
from jobkit_worker.done_records import is_current, make_record, read_record
from jobkit_worker.drain import Drain
from jobkit_worker.errors import (
    AckTimedOut,
    BrokerLost,
    ExitCode,
    InputError,
    JobkitError,
    StoreUnavailable,
    TaskError,
)
from jobkit_worker.interruption import worker_interruption
from jobkit_worker.names import MAX_NAME_BYTES, brief, check_name, record_name
from jobkit_worker.outcome import Outcome, Verdict
from jobkit_worker.ownership import claim_outputs
from jobkit_worker.settings import Settings
from jobkit_worker.storage.base import Entry, Store, content_size
from jobkit_worker.task_thread import TaskThread
from jobkit_worker.tasks.contract import Task

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.2
# A wait this much longer than asked: the process was not running (a loaded machine's
# scheduler delays a wake-up by milliseconds, not seconds).
_STOPPED_SECONDS = 5.0
_ALREADY_DONE = "already done from this input (its success record and outputs match); not redone"
_STOP_GRACE_SECONDS = 5.0  # for a stopped task to end, before its item is given back anyway
_tasks = TaskThread()


def take_one(settings: Settings, task: Task, inputs: Store, outputs: Store) -> Outcome:
    """Take one message, do its item and ack it after its outputs are stored.

    Returns the outcome (DONE also when the queue was empty); raises BrokerUnavailable or
    ConfigError before any message is taken.
    """
    (outcome,) = take_items(settings, task, inputs, outputs, drain=False)
    return outcome


def take_items(
    settings: Settings,
    task: Task,
    inputs: Store,
    outputs: Store,
    drain: bool,
    on_wait: Callable[[str], None] | None = None,
    turn: int | None = None,
) -> Iterator[Outcome]:
    """Yield the outcome of each item taken, one at a time: one item, or with `drain` every
    item until the queue is empty or an item fails transiently (it goes back to the queue);
    a lost connection does not end a drain, which goes on through another node. `on_wait`
    hears when the broker keeps the worker waiting (an alarm). With `turn`, a descriptor, the
    worker connects and declares, then waits for a byte on it before it takes anything; at its
    end of file it ends having taken nothing, yielding nothing.

    Yields one "empty" outcome when no item was there at all; raises BrokerUnavailable or
    ConfigError before any message is taken.
    """
    taken = 0
    outputs.group_writes()  # an item's writes made durable together, a drain's items too
    while True:
        try:
            # Connected, the worker may hold items between those it reports (one taken ahead,
            # some done and not yet acked): a signal asks it to stop and give them back.
            with Session(settings, "worker", on_wait) as session, worker_interruption.deferred():
                session.declare(settings.queue)
                if turn is not None and not _turn_comes(session, turn):
                    return
                turn = None  # taken: a connection lost later is not waited on again
                draining = Drain(session, outputs, settings.queue) if drain else None
                for outcome in _outcomes(session, settings, task, inputs, outputs, draining):
                    if outcome.item is not None or not taken:  # "empty" only if nothing was
                        yield outcome
                        taken += 1
                if draining is not None:
                    draining.give_back()
                return
        except BrokerLost as exc:
            # The broker returns the unacked messages when the connection goes; a draining
            # worker keeps what it stored for them (they come back, found done) and goes on
            # through the next node that answers.
            outputs.commit()
            reason = _lost_reason(exc)
            log.error("%s", reason)
            yield Outcome(Verdict.RETRY, exc.item, reason)
            taken += 1
            if not drain or worker_interruption.requested or exc.ends_drain:
                return


def _outcomes(
    session: Session,
    settings: Settings,
    task: Task,
    inputs: Store,
    outputs: Store,
    draining: Drain | None,
) -> Iterator[Outcome]:
    """Take and do one item, or with `draining` items until the queue is empty, one fails
    transiently or the worker is asked to stop; yield each outcome once its item is settled
    (with `draining`, items done are acked in groups)."""
    while True:
        outcome = _take(session, settings, task, inputs, outputs, draining)  # signals put off
        held = draining is not None and outcome.item is not None and outcome.verdict.succeeded
        if draining is not None and (not held or draining.due() or worker_interruption.requested):
            yield from draining.release()
        if not held:
            yield outcome
        if draining is None or outcome.item is None or outcome.verdict is Verdict.RETRY:
            return
        if worker_interruption.requested:
            return


def _turn_comes(session: Session, descriptor: int) -> bool:
    """Wait, answering the broker, until a byte arrives on `descriptor` (True), or its end of
    file or a request to stop (False)."""
    while not worker_interruption.requested:
        readable, _, _ = select.select([descriptor], [], [], _POLL_SECONDS)
        if readable:
            return os.read(descriptor, 1) != b""
        session.serve(0)
    return False


def _lost_reason(exc: BrokerLost) -> str:
    """What a worker says of a connection or channel lost: an item held too long by name, and
    a worker that did not run meanwhile as such (no timeout needs raising then)."""
    if exc.stopped_seconds:
        return (
            f"{exc.item}: this worker did not run for {exc.stopped_seconds:.0f} s while it held "
            "the item (stopped by SIGSTOP or a debugger, or its machine suspended), and "
            "RabbitMQ took the item back for another try."
        )
    if isinstance(exc, AckTimedOut):
        limit = "" if exc.limit_seconds is None else f", {exc.limit_seconds:g} s"
        return (
            f"{exc.item} took longer than the broker's acknowledgement timeout "
            f"(consumer_timeout{limit}) and RabbitMQ took it back for another try; raise "
            "consumer_timeout above the longest item and keep TASK_TIMEOUT_SECONDS below it."
        )
    held = f"{exc.item}: " if exc.item else ""
    return f"{held}{exc} The item goes back to the queue."


def item_body(body: bytes) -> bytes:
    """The item a message body names: one trailing newline, which `echo NAME |` and
    `amqp-publish -l` add, is not part of it."""
    return body.removesuffix(b"\n")


def _take(
    session: Session,
    settings: Settings,
    task: Task,
    inputs: Store,
    outputs: Store,
    draining: Drain | None = None,
) -> Outcome:
    delivery = draining.take() if draining is not None else session.get(settings.queue)
    if delivery is None:
        log.info("Queue %s is empty; nothing to do.", settings.queue)
        return Outcome(Verdict.EMPTY)
    item = brief(item_body(delivery.body).decode("utf-8", errors="replace"))  # cut short
    log.info("took %s (delivery tag %d, delivery %d)", item, delivery.tag, delivery.number)
    try:
        return _do(session, settings, task, inputs, outputs, delivery, item, draining)
    except BrokerLost as exc:
        exc.item = item
        raise


def _do(
    session: Session,
    settings: Settings,
    task: Task,
    inputs: Store,
    outputs: Store,
    delivery: Delivery,
    item: str,
    draining: Drain | None,
) -> Outcome:
    """Do the item of `delivery`, then settle it: ack (or hold it to ack with others), give
    back, requeue or dead-letter."""
    took_at = round(time.time(), 3)
    started = time.monotonic()
    number = delivery.number
    phases: dict[str, float] = {}
    redo = bool(delivery.headers.get(REDO_HEADER))
    body = item_body(delivery.body)
    untouched = worker_interruption.requested  # asked to stop while taking it
    verdicts: list[Verdict] = []
    error = None
    if not untouched:
        error = _run_while_serving(
            session,
            draining.take_ahead if draining is not None else lambda: None,
            lambda: verdicts.append(
                _process(
                    item,
                    body,
                    task,
                    inputs,
                    outputs,
                    settings,
                    number,
                    redo,
                    commit=draining is None,
                    phases=phases,
                )
            ),
        )
    seconds = round(time.monotonic() - started, 3)
    if untouched or (worker_interruption.requested and error is not None):
        session.give_back(settings.queue, delivery)
        reason = f"stopped by {worker_interruption.signal_name}; the item went back to the queue"
        log.warning("%s: %s", item, reason)
        return Outcome(Verdict.RETRY, item, reason, number, seconds, took_at, phases, started)
    if isinstance(error, StoreUnavailable):
        session.give_back(settings.queue, delivery)
        reason = f"{_one_line(error)} The item went back to the queue, spending no delivery."
        log.warning("%s: %s", item, reason)
        return Outcome(Verdict.RETRY, item, reason, number, seconds, took_at, phases, started)
    if error is None:
        (verdict,) = verdicts
        outcome = Outcome(verdict, item, _note(verdict), number, seconds, took_at, phases, started)
        if draining is not None:
            draining.hold(delivery, outcome)
            return outcome
        session.ack(delivery)
        log.info("acked %s (delivery tag %d)", item, delivery.tag)
        return outcome

    reason = _one_line(error)
    if isinstance(error, InputError) or number > DELIVERY_LIMIT:
        if not isinstance(error, InputError):
            reason = f"failed {number} times, last: {reason}"
        dead_queue = dead_queue_name(settings.queue)
        session.dead_letter(delivery, dead_queue, reason)
        log.error("dead-lettered %s to %s: %s", item, dead_queue, reason)
        return Outcome(Verdict.DEAD, item, reason, number, seconds, took_at, phases, started)
    session.requeue(delivery)
    log.warning("returned %s to the queue for another try: %s", item, reason)
    return Outcome(Verdict.RETRY, item, reason, number, seconds, took_at, phases, started)


def do_named(item: bytes, settings: Settings, task: Task, inputs: Store, outputs: Store) -> Outcome:
    """Do the item named by `item` without taking a message: read, run the task, store.

    The caller owns the message (amqp-consume acks it only on exit 0): DEAD means the input can
    never succeed, RETRY that another try may.
    """
    started = time.monotonic()
    name = item.decode("utf-8", errors="replace")
    log.info("took %s from standard input", name)
    try:
        outputs.group_writes()
        verdict = _process(name, item, task, inputs, outputs, settings, 1, False, commit=True)
    except Exception as exc:  # every failure becomes an exit code, as in take_one
        if not isinstance(exc, JobkitError):
            log.error("unexpected error in the task", exc_info=exc)
        log.error("failed %s: %s", name, _one_line(exc))
        seconds = round(time.monotonic() - started, 3)
        return Outcome(_failed(exc), name, _one_line(exc), seconds=seconds)
    seconds = round(time.monotonic() - started, 3)
    return Outcome(verdict, name, _note(verdict), seconds=seconds)


def _note(verdict: Verdict) -> str:
    """The reason an outcome of a success gives: why nothing was done, if nothing was."""
    return _ALREADY_DONE if verdict is Verdict.ALREADY_DONE else ""


def _failed(error: BaseException) -> Verdict:
    """The verdict on an item whose work raised `error`: what its exit code says."""
    code = error.exit_code if isinstance(error, JobkitError) else ExitCode.RETRY
    return Verdict.of_exit(code)


def _process(
    item: str,
    body: bytes,
    task: Task,
    inputs: Store,
    outputs: Store,
    settings: Settings,
    delivery: int,
    redo: bool,
    commit: bool,
    phases: dict[str, float] | None = None,
) -> Verdict:
    """Read, run the task, store the outputs, then the success record; returns DONE. With
    `commit`, they are durable when it returns; else at the store's next commit.

    An item whose record still matches its input and outputs is not done again unless `redo`
    (a copy published twice, or redelivered after its ack was lost): ALREADY_DONE. Puts the
    seconds of each phase finished (read, task, store) in `phases`.
    """
    phases = {} if phases is None else phases
    started = time.monotonic()
    data, source = _read(item, body, inputs, settings)
    lap = _lap(phases, "read", started)
    record = read_record(outputs, item)
    if record is not None and record.queue != settings.queue:
        raise InputError(
            f"{item}: its success record in OUTPUT_URL is queue {record.queue!r}'s, which a "
            f"record of queue {settings.queue!r} would replace; give each queue an OUTPUT_URL "
            "of its own."
        )
    if not redo and is_current(outputs, record, settings.task_label, data):
        log.info("%s: %s", item, _ALREADY_DONE)
        return Verdict.ALREADY_DONE
    with task(item, data) as results:  # a program's files are there for the block
        lap = _lap(phases, "task", lap)
        claim_outputs(outputs, item, results, record)
        versions = {}
        for name, content in results.items():
            versions[name] = outputs.write(name, content)
            log.info("stored %s in %s (%d bytes)", name, outputs, content_size(content))
        seconds = time.monotonic() - started
        done = make_record(
            item,
            settings.queue,
            settings.task_label,
            data,
            source,
            results,
            versions,
            delivery,
            seconds,
        )
    outputs.write(record_name(item), done.to_bytes())
    if commit:  # else a drain commits it with the items held beside it
        outputs.commit()
    _lap(phases, "store", lap)
    return Verdict.DONE


def _lap(phases: dict[str, float], phase: str, since: float) -> float:
    """Note the seconds of `phase`, which began at `since`; returns now, the next one's start."""
    now = time.monotonic()
    phases[phase] = round(now - since, 4)
    return now


def _read(item: str, body: bytes, inputs: Store, settings: Settings) -> tuple[bytes, Entry | None]:
    """The item's input, as stored: the file it names (with its entry) or, with NO_INPUT, the
    message body itself (with none)."""
    if len(body) > MAX_NAME_BYTES:
        raise InputError(
            f"The message body is {len(body):,} bytes, more than an item's name may be "
            f"({MAX_NAME_BYTES:,}); it begins {body[:60]!r}."
        )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"The message body {body[:60]!r} is not UTF-8 text.") from exc
    if settings.no_input:
        check_name(item)  # its success record is stored under its name
        return body, None
    size, limit = inputs.size(item), settings.max_input_bytes
    if size > limit:  # refused before reading: a clear dead letter, not an out-of-memory kill
        raise InputError(
            f"{item}: {size:,} bytes is more than MAX_INPUT_BYTES ({limit:,}); split the file, "
            "or raise the limit together with the worker's memory."
        )
    data, source = inputs.read_listed(item)
    log.info("read %s (%d bytes)", item, len(data))
    return data, source


def _run_while_serving(
    session: Session, meanwhile: Callable[[], None], work: Callable[[], None]
) -> BaseException | None:
    """Run `work` in the task thread while this thread does `meanwhile` once, then answers the
    broker (heartbeats).

    Returns the exception `work` raised, or None.
    """
    running = _tasks.start(work)
    stopped = 0.0  # the longest time this process did not run: stopped, or its machine suspended
    try:
        meanwhile()
        while not running.done.is_set() and not worker_interruption.requested:
            session.serve(0)
            waited = time.monotonic()
            running.done.wait(timeout=_POLL_SECONDS)
            stopped = max(stopped, time.monotonic() - waited - _POLL_SECONDS)
    except BrokerLost as exc:
        # The broker has taken the item back: stop the task, which would work on for nothing
        # and could write while another worker does the item.
        if stopped > _STOPPED_SECONDS:
            exc.stopped_seconds = stopped
        worker_interruption.stop_tasks()
        exc.ends_drain = exc.ends_drain or not running.done.wait(timeout=_STOP_GRACE_SECONDS)
        raise
    # Stopped: a program task was killed and ends at once, removing its scratch files; a
    # function cannot be stopped and is left behind when the process ends.
    if not running.done.wait(timeout=_STOP_GRACE_SECONDS):
        return TaskError("the task was still running when the worker was asked to stop")
    error = running.error
    if error is not None and not isinstance(error, JobkitError):
        log.error("unexpected error in the task", exc_info=error)
    return error


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, JobkitError):
        text = f"{type(error).__name__}: {text}"
    return text[:1000]
