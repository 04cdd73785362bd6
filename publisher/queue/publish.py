"""Putting items on the work queue: persistent messages, confirmed by the broker in batches.

This is the kit's one use of pika's asynchronous connection, which keeps thousands of messages
in flight; everything else goes through worker.broker's blocking Session.
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

from worker.broker import Session, connection_parameters, message_properties
from worker.errors import BrokerUnavailable
from worker.settings import Settings, mask_url

log = logging.getLogger(__name__)

_RETRY_PAUSE_SECONDS = 1.0
# Messages published but not yet confirmed, at most. Waiting for each confirm caps a publisher
# at about 1,000 a second; a window keeps the broker busy while confirms stream back.
WINDOW = 2_000


def read_items(lines: Iterable[str]) -> list[str]:
    """The items in `lines`, one a line; surrounding white space, blank lines and comments
    (lines starting with '#') left out."""
    return [item for line in lines if (item := line.strip()) and not item.startswith("#")]


class PublishIncomplete(BrokerUnavailable):
    """The broker confirmed only some of the items; `confirmed` names them."""

    def __init__(self, message: str, confirmed: list[str]) -> None:
        super().__init__(message)
        self.confirmed = confirmed


class PublishInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the publishing; `confirmed` names what the broker had confirmed."""

    def __init__(self, confirmed: list[str]) -> None:
        super().__init__()
        self.confirmed = confirmed


def publish_items(settings: Settings, names: Sequence[str]) -> list[str]:
    """Publish one message per name; returns the names the broker confirmed (all of them).

    Raises PublishIncomplete, naming what was confirmed, if the broker refuses one (nack, or
    returned as unroutable) or the connection fails part-way, and PublishInterrupted on Ctrl-C;
    BrokerUnavailable or ConfigError before any is published.
    """
    with Session(settings, "publisher") as session:  # reports an unreachable broker in one line
        session.declare(settings.queue)
    if not names:
        return []
    publisher = _WindowedPublisher(settings, names)
    try:
        publisher.run()
    except KeyboardInterrupt:
        raise PublishInterrupted(publisher.confirmed_names) from None
    missing = len(names) - publisher.confirmed
    if missing:
        raise PublishIncomplete(
            f"RabbitMQ confirmed {publisher.confirmed} of {len(names)} items to "
            f"{settings.queue!r}; {missing} were not ({publisher.problem()}); "
            "publish those again once it is fixed.",
            publisher.confirmed_names,
        )
    return publisher.confirmed_names


class _WindowedPublisher:
    """Publish over an asynchronous connection, at most WINDOW unconfirmed at a time.

    Counts exactly the messages the broker confirmed: acks (single or `multiple`) of messages
    that were not returned as unroutable. When the node it publishes to goes away, it connects
    to the next one BROKER_URL names (for BROKER_RETRY_SECONDS) and publishes again what was not
    confirmed: an item may then be queued twice, never lost.
    """

    def __init__(self, settings: Settings, names: Sequence[str]) -> None:
        self.settings = settings
        self.confirmed_names: list[str] = []
        self.refused: list[str] = []
        self.closed_because = ""
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
        self._ioloop = IOLoop()
        self._connection = self._connect()

    def run(self) -> None:
        """Publish everything, or until no node takes the rest; returns when it is closed."""
        self._ioloop.start()

    @property
    def confirmed(self) -> int:
        return len(self.confirmed_names)

    def problem(self) -> str:
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
        return self._connection

    def _on_open(self, connection: pika.SelectConnection) -> None:
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
            self._channel.basic_publish(
                "", self.settings.queue, body, message_properties(body), mandatory=True
            )
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
            if self._connection.is_open:
                self._connection.close()

    @property
    def _unfinished(self) -> bool:
        return bool(self._unconfirmed) or bool(self._pending)

    def _on_lost(self, _connection: pika.SelectConnection, reason: BaseException | str) -> None:
        if not self._unfinished or self._refused_channel:
            self._ioloop.stop()
            return
        # What was not confirmed goes out again, in its order, through the next node.
        self._pending.extendleft(reversed(self._unconfirmed.values()))
        self._unconfirmed.clear()
        now = time.monotonic()
        if self._give_up_at is None:
            self._give_up_at = now + self.settings.broker_retry_seconds
            log.warning("Lost RabbitMQ while publishing (%s); trying the next node.", reason)
        if now >= self._give_up_at:
            self.closed_because = str(reason) or type(reason).__name__
            self._ioloop.stop()
            return
        self._node = (self._node + 1) % len(self._nodes)
        delay = 0.0 if self._node else _RETRY_PAUSE_SECONDS  # pause once round all the nodes
        self._ioloop.call_later(delay, self._connect)


def purge_queue(settings: Settings, queue: str) -> int:
    """Delete every ready message in `queue` (the work or dead-letter queue); returns how many."""
    with Session(settings, "purge") as session:
        session.declare(settings.queue)
        return session.purge(queue)


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
