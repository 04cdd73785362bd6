"""Putting items on the work queue: persistent messages, confirmed by the broker in batches.

This is the kit's one use of pika's asynchronous connection, which keeps thousands of messages
in flight; everything else goes through jobkit_worker.broker's blocking Session.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence

import pika
import pika.channel
import pika.exceptions
import pika.frame
import pika.spec
from pika.adapters.select_connection import IOLoop

from jobkit_worker.broker import (
    REDO_HEADER,
    Session,
    alarm_name,
    blocked_too_long,
    connection_parameters,
    message_properties,
    refusal,
)
from jobkit_worker.errors import BrokerLost, BrokerUnavailable
from jobkit_worker.interruption import Interruption
from jobkit_worker.settings import Settings, mask_url

log = logging.getLogger(__name__)

_RETRY_PAUSE_SECONDS = 1.0
_ACCESS_REFUSED = 403
# Messages published but not yet confirmed, at most. Waiting for each confirm caps a publisher
# at about 1,000 a second; a window keeps the broker busy while confirms stream back.
WINDOW = 2_000
# After an interrupt, for the confirms of what was sent: each one not come is a message that may
# or may not be queued.
CONFIRM_WAIT_SECONDS = 5.0
# A quorum queue whose only node is killed within seconds of creating it comes back empty,
# confirmed messages and all (RabbitMQ 3.10 and 4.0 alike); older, it keeps them. By major
# version, the age past which it did, with a margin (measured: see the README).
_CRASH_SAFE_AGE_SECONDS = {"3": 30.0, "4": 10.0}
_CRASH_SAFE_AGE_UNKNOWN = 30.0


def read_items(lines: Iterable[bytes]) -> list[str]:
    """The items in `lines`, one a line, each exactly as written but for its line end ('\\n' or
    '\\r\\n'); empty lines are left out. Bytes that are not UTF-8 are kept, escaped as Python
    escapes file names, for the name check to refuse and show."""
    return [
        item.decode("utf-8", errors="surrogateescape")
        for line in lines
        if (item := line.removesuffix(b"\n").removesuffix(b"\r"))
    ]


class Unfinished:
    """What a publishing stopped part-way did: `confirmed` by the broker, and `unsent`, never
    sent; the rest were sent without a confirm, and may or may not be queued."""

    def __init__(self, confirmed: list[str], unsent: list[str]) -> None:
        self.confirmed = confirmed
        self.unsent = unsent


class PublishIncomplete(BrokerUnavailable, Unfinished):
    """The broker did not confirm every item: it refused some, or the connection failed."""

    def __init__(self, message: str, confirmed: list[str], unsent: list[str]) -> None:
        BrokerUnavailable.__init__(self, message)
        Unfinished.__init__(self, confirmed, unsent)


class PublishInterrupted(KeyboardInterrupt, Unfinished):
    """SIGINT or SIGTERM stopped the publishing; `signum` is the signal."""

    def __init__(self, signum: int, confirmed: list[str], unsent: list[str]) -> None:
        KeyboardInterrupt.__init__(self)
        Unfinished.__init__(self, confirmed, unsent)
        self.signum = signum


def publish_items(settings: Settings, names: Sequence[str], redo: bool = False) -> list[str]:
    """Declare the work queue and publish one message per name; returns the names the broker
    confirmed (all of them). With `redo`, workers do the items again even if done.

    On SIGINT or SIGTERM it sends no more, waits up to CONFIRM_WAIT_SECONDS for the confirms
    of what it sent, and raises PublishInterrupted; raises PublishIncomplete if the broker
    refuses one (nack, or returned as unroutable) or the connection fails part-way;
    BrokerUnavailable or ConfigError before any is published.
    """
    created_at = _declare(settings)
    if not names:
        return []
    publisher = _WindowedPublisher(settings, names, {REDO_HEADER: True} if redo else None)
    interruption = Interruption()
    interruption.on_request(publisher.stop)
    with interruption.deferred(), interruption.installed():
        publisher.run()
        if created_at is not None and publisher.confirmed:
            _wait_until_crash_safe(settings, created_at, publisher.broker_version, interruption)
    unsent = list(publisher.unsent)
    if interruption.signum is not None:
        raise PublishInterrupted(interruption.signum, publisher.confirmed_names, unsent)
    missing = len(names) - publisher.confirmed
    if missing:
        raise PublishIncomplete(
            f"RabbitMQ confirmed {publisher.confirmed} of {len(names)} items to "
            f"{settings.queue!r}; {missing} were not ({publisher.problem()}); "
            "publish those again once it is fixed.",
            publisher.confirmed_names,
            unsent + publisher.refused,
        )
    return publisher.confirmed_names


def _declare(settings: Settings) -> float | None:
    """Declare the work queue, through the next node if one is lost meanwhile; returns when
    (time.monotonic) it created the queue, None if the queue was there."""
    give_up_at = time.monotonic() + settings.broker_retry_seconds
    while True:
        try:
            with Session(settings, "publisher") as session:  # an unreachable broker: one line
                created_at = None if session.exists(settings.queue) else time.monotonic()
                session.declare(settings.queue)
                return created_at
        except BrokerLost as exc:
            if time.monotonic() >= give_up_at:
                raise
            log.warning("%s Declaring the queue again.", exc)
            time.sleep(_RETRY_PAUSE_SECONDS)


def _wait_until_crash_safe(
    settings: Settings, created_at: float, version: str, interruption: Interruption
) -> None:
    """Wait until the queue created at `created_at` keeps its messages through a crash of its
    node, saying so first; a signal ends the wait. Where BROKER_URL names several nodes, a
    cluster's quorum queue confirms a message only once a majority of them holds it: no wait."""
    age = settings.new_queue_wait_seconds
    if age is None and len(set(settings.broker_urls)) > 1:
        return
    if age is None:
        age = _CRASH_SAFE_AGE_SECONDS.get(version.split(".")[0], _CRASH_SAFE_AGE_UNKNOWN)
    left = created_at + age - time.monotonic()
    if left <= 0:
        return
    log.warning(
        "Queue %r is new: waiting %.0f s more until it keeps its messages through a crash of "
        "its node (RabbitMQ %s; NEW_QUEUE_WAIT_SECONDS).",
        settings.queue,
        left,
        version or "of unknown version",
    )
    deadline = time.monotonic() + left
    while not interruption.requested and time.monotonic() < deadline:
        time.sleep(min(0.1, max(deadline - time.monotonic(), 0.0)))


class _WindowedPublisher:
    """Publish over an asynchronous connection, at most WINDOW unconfirmed at a time.

    Counts exactly the messages the broker confirmed: acks (single or `multiple`) of messages
    that were not returned as unroutable. When the node it publishes to goes away, it connects
    to the next one BROKER_URL names (for BROKER_RETRY_SECONDS) and publishes again what was not
    confirmed: an item may then be queued twice, never lost.
    """

    def __init__(
        self, settings: Settings, names: Sequence[str], headers: dict[str, object] | None = None
    ) -> None:
        self.settings = settings
        self._headers = headers
        self._stopping = False
        self.confirmed_names: list[str] = []
        self.refused: list[str] = []
        self.closed_because = ""
        self.gave_up = ""  # why it stopped trying, when the broker blocked it too long
        self.broker_version = ""  # as the broker announced it, e.g. "3.10.8"
        self._pending = deque(names)
        self._unconfirmed: OrderedDict[int, str] = OrderedDict()  # delivery tag -> name
        self._tag = 0  # the channel's last delivery tag
        self._returned: Counter[str] = Counter()
        self._channel: pika.channel.Channel | None = None
        self._refused_channel = False
        self._nodes = connection_parameters(settings, "publisher")
        self._node = 0
        self._give_up_at: float | None = None  # while reconnecting
        self._refusing_since: float | None = None  # since when the broker nacks, not acks
        self._resume_at = 0.0  # publishing pauses after a refusal
        self._blocked_by = ""  # the alarm for which the broker blocks publishing
        self._ioloop = IOLoop()
        self._connection = self._connect()

    def run(self) -> None:
        """Publish everything, or until no node takes the rest or it is stopped; returns when
        it is closed."""
        self._ioloop.start()

    def stop(self) -> None:
        """Send no more; close once what was sent is confirmed, or CONFIRM_WAIT_SECONDS
        passed. Safe to call from a signal handler."""
        self._ioloop.add_callback_threadsafe(self._stop_sending)

    @property
    def unsent(self) -> list[str]:
        """The names never sent (or sent and refused, to be sent again)."""
        return list(self._pending)

    def _stop_sending(self) -> None:
        self._stopping = True
        self._ioloop.call_later(CONFIRM_WAIT_SECONDS, self._close)
        if not self._unconfirmed:
            self._close()

    def _close(self) -> None:
        if self._connection.is_open:
            self._connection.close()
        elif not self._connection.is_closing:
            self._ioloop.stop()

    @property
    def confirmed(self) -> int:
        return len(self.confirmed_names)

    def problem(self) -> str:
        if self.gave_up:
            return self.gave_up
        if self.closed_because:
            return f"the connection to {mask_url(self.settings.broker_url)} closed: " + (
                self.closed_because
            )
        shown = ", ".join(self.refused[:3]) + (", ..." if len(self.refused) > 3 else "")
        return f"refused by the broker: {shown}"

    def _connect(self) -> pika.SelectConnection:
        self._connection = pika.SelectConnection(
            self._nodes[self._node],
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_lost,
            on_close_callback=self._on_lost,
            custom_ioloop=self._ioloop,
        )
        self._connection.add_on_connection_blocked_callback(self._on_blocked)
        self._connection.add_on_connection_unblocked_callback(self._on_unblocked)
        return self._connection

    def _on_blocked(self, _connection: pika.SelectConnection, frame: pika.frame.Method) -> None:
        self._blocked_by = alarm_name(frame.method.reason)
        log.warning(
            "RabbitMQ blocks publishing (%s); waiting up to %g s (BROKER_BLOCKED_SECONDS) for "
            "it to clear.",
            self._blocked_by,
            self.settings.broker_blocked_seconds,
        )

    def _on_unblocked(self, _connection: pika.SelectConnection, _frame: pika.frame.Method) -> None:
        log.warning("RabbitMQ no longer blocks publishing (%s); going on.", self._blocked_by)

    def _on_open(self, connection: pika.SelectConnection) -> None:
        self.broker_version = str((connection.server_properties or {}).get("version", ""))
        self._give_up_at = None
        self._open_channel()

    def _open_channel(self) -> None:
        if self._connection.is_open:
            self._connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: pika.channel.Channel) -> None:
        self._channel, self._tag = channel, 0
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(self._on_confirm, callback=lambda _frame: self._publish_more())

    def _publish_more(self) -> None:
        assert self._channel is not None
        if self._stopping:
            if not self._unconfirmed:
                self._close()
            return
        if self._resume_at:
            if self._unconfirmed:
                return  # the next confirm calls this again
            # After refusals, a new channel: the old one may keep sending to the queue's
            # former leader (seen with RabbitMQ 3.10), which refuses what it gets.
            self._resume_at, pause = 0.0, self._resume_at - time.monotonic()
            self._channel.close()
            self._ioloop.call_later(max(pause, 0.0), self._open_channel)
            return
        while self._pending and len(self._unconfirmed) < WINDOW:
            name = self._pending.popleft()
            body = name.encode()
            properties = message_properties(body, self._headers)
            self._channel.basic_publish("", self.settings.queue, body, properties, mandatory=True)
            self._tag += 1
            self._unconfirmed[self._tag] = name
        if not self._unconfirmed:
            self._connection.close()

    def _on_return(
        self,
        _channel: pika.channel.Channel,
        _method: pika.spec.Basic.Return,
        _properties: pika.spec.BasicProperties,
        body: bytes,
    ) -> None:
        # The broker returns an unroutable message just before it acks it.
        self._returned[body.decode()] += 1

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        if method.multiple:
            while self._unconfirmed and next(iter(self._unconfirmed)) <= method.delivery_tag:
                self._settle(self._unconfirmed.popitem(last=False)[1], acked)
        elif method.delivery_tag in self._unconfirmed:
            self._settle(self._unconfirmed.pop(method.delivery_tag), acked)
        self._publish_more()

    def _settle(self, name: str, acked: bool) -> None:
        if acked and not self._returned[name]:
            self.confirmed_names.append(name)
            self._refusing_since = None
            return
        if self._returned[name]:
            self._returned[name] -= 1
        # Refused (nacked, or returned as unroutable: the queue was declared, so it is down, as
        # while a quorum queue elects a new leader after a node went): again in a moment, for as
        # long as BROKER_RETRY_SECONDS allows without a message confirmed.
        now = time.monotonic()
        if self._refusing_since is None:
            self._refusing_since = now
        if now - self._refusing_since > self.settings.broker_retry_seconds:
            self.refused.append(name)
            return
        self._pending.append(name)
        self._resume_at = now + _RETRY_PAUSE_SECONDS

    def _on_channel_closed(self, _channel: pika.channel.Channel, reason: BaseException) -> None:
        if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
            # Refused by the broker (not a node lost): another node would refuse it too.
            self._refused_channel = True
            if self._unfinished and not self.closed_because:
                self.closed_because = str(reason) or type(reason).__name__
                if reason.reply_code == _ACCESS_REFUSED:
                    self.closed_because = refusal(
                        self.settings, "publish to", self.settings.queue, "write"
                    )
            if self._connection.is_open:
                self._connection.close()

    @property
    def _unfinished(self) -> bool:
        return bool(self._unconfirmed) or bool(self._pending)

    def _on_lost(self, _connection: pika.SelectConnection, reason: BaseException | str) -> None:
        if isinstance(reason, pika.exceptions.ConnectionBlockedTimeout):
            # An alarm holds the whole cluster: another node would block as well.
            self.gave_up = blocked_too_long(self.settings, self._blocked_by)
            self._ioloop.stop()
            return
        if not self._unfinished or self._refused_channel or self._stopping:
            self._ioloop.stop()
            return
        now = time.monotonic()
        if self._give_up_at is None:
            self._give_up_at = now + self.settings.broker_retry_seconds
            log.warning("Lost RabbitMQ while publishing (%s); trying the next node.", reason)
        # What was not confirmed goes out again, in its order, through the next node.
        if self._unconfirmed:
            log.warning(
                "%d items sent and not confirmed are sent again: any the lost node had queued "
                "are then queued twice (a worker acks such a copy without doing it again).",
                len(self._unconfirmed),
            )
        self._pending.extendleft(reversed(self._unconfirmed.values()))
        self._unconfirmed.clear()
        if now >= self._give_up_at:
            self.closed_because = str(reason) or type(reason).__name__
            self._ioloop.stop()
            return
        self._node = (self._node + 1) % len(self._nodes)
        delay = 0.0 if self._node else _RETRY_PAUSE_SECONDS  # pause once round all the nodes
        self._ioloop.call_later(delay, self._connect)


def broker_version(settings: Settings) -> str:
    """The product and version the broker announces when a connection opens."""
    announced: dict[str, object] = {}

    def on_open(connection: pika.SelectConnection) -> None:
        announced.update(connection.server_properties or {})
        connection.close()

    connection = pika.SelectConnection(
        connection_parameters(settings, "report")[0],
        on_open_callback=on_open,
        on_open_error_callback=lambda connection, error: connection.ioloop.stop(),
        on_close_callback=lambda connection, reason: connection.ioloop.stop(),
    )
    connection.ioloop.start()
    return f"{announced.get('product', 'unknown')} {announced.get('version', '')}".strip()
