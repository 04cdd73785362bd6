"""RabbitMQ, through pika's blocking connection: the queue contract and every operation on it.

The rest of the kit talks to the broker through `Session` and never sees pika: connection
failures become BrokerUnavailable (before any message is taken) or BrokerLost (while in use).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingConnection
from pika.adapters.utils.connection_workflow import AMQPConnectorStackTimeout

from jobkit_worker.errors import AckTimedOut, BrokerLost, BrokerUnavailable, ConfigError
from jobkit_worker.settings import DEAD_QUEUE_SUFFIX, TURN_SUFFIX, Settings, mask_url

log = logging.getLogger(__name__)

_FIRST_RETRY_SECONDS = 0.5
_MAX_RETRY_SECONDS = 8.0
_ACCESS_REFUSED = 403  # the user lacks a permission
_RESOURCE_LOCKED = 405  # another connection holds the exclusive queue
_PRECONDITION_FAILED = 406  # the queue exists with other arguments
_TURN_WAIT_SECONDS = 300.0  # how long a reader waits for another to finish taking its turn
_TURN_POLL_SECONDS = 0.2
_SLOW_CONFIRM_SECONDS = 2.0  # a confirm takes milliseconds, unless the broker blocks publishing
# How RabbitMQ closes a connection it cannot serve for now: a node shutting down, a vhost down.
_STOPPING = re.compile(r"CONNECTION_FORCED|shutdown|is down")
_REFUSED_LOGIN = re.compile(r"ACCESS_REFUSED")  # a login refused, not a connection dropped
# A worker's heartbeat, unless BROKER_URL sets one: a worker that does not run at all (stopped,
# its machine suspended) answers none, and RabbitMQ closes its connection, returning its item,
# after about three (measured on 3.10.8: 29 s at 10 s). The delivery acknowledgement timeout
# does not: 3.10 waits for the frozen worker to answer the channel's close. The worker answers
# heartbeats while its task runs, however long.
WORKER_HEARTBEAT_SECONDS = 20
# How RabbitMQ closes a channel that held a delivery past consumer_timeout.
_ACK_TIMEOUT = re.compile(r"delivery acknowledgement .*timed out")
_ACK_TIMEOUT_LIMIT = re.compile(r"Timeout value used: (\d+) ms")

# A message is delivered at most DELIVERY_LIMIT + 1 times, then the broker dead-letters it.
DELIVERY_LIMIT = 3
# Headers of a message the worker dead-letters itself.
REASON_HEADER = "jobkit-reason"
DELIVERIES_HEADER = "jobkit-deliveries"  # how many times it was delivered, the last included
FAILED_AT_HEADER = "jobkit-failed-at"
WORKER_HEADER = "jobkit-worker"
# On a message published with 'jobkit publish --force': do the item again even if it is done.
REDO_HEADER = "jobkit-redo"


def dead_queue_name(queue: str) -> str:
    """The queue that keeps the items of `queue` which can never succeed."""
    return queue + DEAD_QUEUE_SUFFIX


def turn_queue_name(queue: str) -> str:
    """The exclusive queue whose holder alone reads the dead letters of work queue `queue`."""
    return queue + TURN_SUFFIX


def queue_arguments(queue: str) -> dict[str, Any]:
    """The work queue's arguments; every declaration must use exactly these."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_queue_name(queue),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # required by at-least-once dead-lettering
    }


# The dead-letter queue is replicated like the work queue, so that it outlives any one node.
# Its delivery limit is RabbitMQ 4's default of 20 lifted: every look at a dead letter ('jobkit
# dead list', 'jobkit status') returns it unacked, which counts as a delivery.
DEAD_QUEUE_ARGUMENTS = {"x-queue-type": "quorum", "x-delivery-limit": 1_000_000}


class _OtherArguments(ConfigError):
    """The queue exists with other arguments than the kit declares."""


class _Missing(ConfigError):
    """The queue does not exist."""


def message_properties(body: bytes, headers: dict[str, Any] | None = None) -> pika.BasicProperties:
    """A message's properties: persistent text with a stable id, the same for the same item."""
    return pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
        content_type="text/plain",
        message_id=hashlib.sha1(body).hexdigest(),
        headers=headers,
    )


@dataclass(frozen=True)
class Delivery:
    """One message taken from a queue and not yet acked."""

    tag: int
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str | None = None
    message_id: str | None = None

    @property
    def number(self) -> int:
        """How many times the broker has delivered this message, this time included."""
        return int(self.headers.get("x-delivery-count", 0)) + 1


class Session:
    """One connection to RabbitMQ and a channel, with publisher confirms from the first publish.

    Opening retries an unreachable broker for BROKER_RETRY_SECONDS, then raises
    BrokerUnavailable; an operation whose connection fails raises BrokerLost, and every message
    taken and not acked goes back to its queue.
    """

    _confirming: bool  # the channel is in confirm mode, switched on by the first publish

    def __init__(
        self, settings: Settings, purpose: str, on_wait: Callable[[str], None] | None = None
    ) -> None:
        """`on_wait` hears, as well as the log, when a publish waits long for its confirm."""
        self.settings = settings
        self._on_wait = on_wait
        self._purpose = purpose
        self._connection = _connect(settings, purpose)
        self._open_channel()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; what was taken and not acked goes back to its queue."""
        # Closing an already broken connection fails, and leaves it closed all the same.
        with contextlib.suppress(pika.exceptions.AMQPError):
            if self._connection.is_open:
                self._connection.close()

    def declare(self, queue: str) -> int:
        """Declare the work queue `queue` and its dead-letter queue; returns the ready messages.

        Raises ConfigError when the user may not use the queue or it exists with other
        arguments.
        """
        ready = self._declare(queue, queue_arguments(queue))
        dead_queue = dead_queue_name(queue)
        try:
            self._declare(dead_queue, DEAD_QUEUE_ARGUMENTS)
        except _OtherArguments:
            # A classic dead-letter queue, as earlier versions of the kit made: it still works,
            # but lives on one node. Deleting it once empty lets the next declaration replace it.
            log.warning("%s is not replicated (made by an earlier version of the kit)", dead_queue)
        return ready

    def _declare(self, queue: str, arguments: dict[str, Any]) -> int:
        try:
            result = self._channel.queue_declare(queue, durable=True, arguments=arguments)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._open_channel()
            if exc.reply_code == _ACCESS_REFUSED:
                raise self._refused("declare", queue, "configure") from exc
            if exc.reply_code == _PRECONDITION_FAILED:
                raise _OtherArguments(
                    f"Queue {queue!r} exists with other arguments than this kit declares "
                    f"({exc.reply_text}); delete it or set QUEUE to another name."
                ) from exc
            raise BrokerLost(
                f"RabbitMQ refused to declare queue {queue!r} for now ({exc.reply_text})."
            ) from exc
        except pika.exceptions.AMQPError as exc:
            raise self._lost(exc) from exc
        return int(result.method.message_count)

    def depth(self, queue: str) -> int:
        """Messages ready in `queue` (not those workers hold); ConfigError if there is none."""
        return int(self._passive(queue).message_count)

    def depth_if_any(self, queue: str) -> int:
        """Messages ready in `queue`, 0 when there is no such queue."""
        try:
            return self.depth(queue)
        except _Missing:
            return 0

    def exists(self, queue: str) -> bool:
        """Whether `queue` exists."""
        try:
            self._passive(queue)
        except _Missing:
            return False
        return True

    def holders(self, queue: str) -> int:
        """The consumers of `queue`, 0 when there is no such queue: on a quorum queue, each
        message taken with basic.get and not yet settled counts as one, as does each consumer
        (holding a message or waiting)."""
        try:
            return int(self._passive(queue).consumer_count)
        except _Missing:
            return 0

    def _passive(self, queue: str) -> Any:
        try:
            result = self._channel.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._open_channel()
            if exc.reply_code == _ACCESS_REFUSED:
                raise self._refused("look at", queue, "read") from exc
            raise _Missing(f"Queue {queue!r} does not exist; publish to it first.") from exc
        except pika.exceptions.AMQPError as exc:
            raise self._lost(exc) from exc
        return result.method

    def get(self, queue: str) -> Delivery | None:
        """Take one message from `queue` without acking it, or None when it is empty."""
        with self._translated(("take messages from", queue, "read")):
            method, properties, body = self._channel.basic_get(queue, auto_ack=False)
        if method is None:
            return None
        return Delivery(
            tag=method.delivery_tag,
            body=body,
            headers=dict(properties.headers or {}),
            content_type=properties.content_type,
            message_id=properties.message_id,
        )

    def ack(self, delivery: Delivery, multiple: bool = False) -> None:
        """Settle `delivery` for good: it leaves the queue; with `multiple`, so do the
        deliveries taken before it and not yet settled."""
        with self._translated():
            self._channel.basic_ack(delivery.tag, multiple=multiple)

    def requeue(self, delivery: Delivery) -> None:
        """Give `delivery` back to its queue for another try, counting towards the limit."""
        # reject, not nack: a rejection counts towards the delivery limit on every version.
        with self._translated():
            self._channel.basic_reject(delivery.tag, requeue=True)

    def publish(self, queue: str, body: bytes, headers: dict[str, Any] | None = None) -> None:
        """Publish `body` to `queue` as a persistent message; returns once the broker confirmed.

        Raises BrokerLost when it is refused or returned as unroutable.
        """
        properties = message_properties(body, headers)
        # pika's blocking connection hears that the broker blocks it only once the wait is over.
        watch = threading.Timer(_SLOW_CONFIRM_SECONDS, self._say_waiting, (body, queue))
        watch.daemon = True
        watch.start()
        try:
            if not self._confirming:  # a round trip that most workers, which never publish, skip
                self._channel.confirm_delivery()
                self._confirming = True
            self._channel.basic_publish("", queue, body, properties, mandatory=True)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
            raise BrokerLost(f"RabbitMQ did not take {body!r} into {queue!r} ({exc!r}).") from exc
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._open_channel()
            if exc.reply_code == _ACCESS_REFUSED:
                raise self._refused("publish to", queue, "write") from exc
            raise self._lost(exc) from exc
        except pika.exceptions.AMQPError as exc:
            raise self._lost(exc) from exc
        finally:
            watch.cancel()

    def _say_waiting(self, body: bytes, queue: str) -> None:
        text = (
            f"{body.decode(errors='replace')}: RabbitMQ has not confirmed its message to {queue!r} "
            f"for {_SLOW_CONFIRM_SECONDS:g} s; a memory or disk alarm blocks publishing, most "
            f"likely: waiting up to {self.settings.broker_blocked_seconds:g} s "
            "(BROKER_BLOCKED_SECONDS)"
        )
        self._tell(text)

    def _tell(self, text: str) -> None:
        """Say that this session waits, and why: in the log and to whoever listens."""
        log.warning("%s", text)
        if self._on_wait is not None:
            self._on_wait(text)

    def give_back(self, queue: str, delivery: Delivery) -> None:
        """Put `delivery` back on `queue` as a new message, confirmed, then ack the old one.

        Unlike a requeue, this costs the item none of its deliveries: for an item whose worker
        was asked to stop, which is not the item's fault. A crash between the two leaves the
        item queued twice, never lost; its success record makes the second time cheap.
        """
        kept = {REDO_HEADER: True} if delivery.headers.get(REDO_HEADER) else None
        self.publish(queue, delivery.body, kept)
        self.ack(delivery)

    def dead_letter(self, delivery: Delivery, dead_queue: str, reason: str) -> None:
        """Publish `delivery` to `dead_queue` with `reason` in its headers, then ack it."""
        headers = {
            REASON_HEADER: reason,
            DELIVERIES_HEADER: delivery.number,
            FAILED_AT_HEADER: datetime.now(UTC).isoformat(timespec="seconds"),
            WORKER_HEADER: socket.gethostname(),
        }
        self.publish(dead_queue, delivery.body, headers)
        self.ack(delivery)

    @contextmanager
    def turn(self, queue: str) -> Iterator[None]:
        """Be the only reader of `queue`'s dead letters, for as long as this lasts.

        A reader takes the letters it reads, so another reading at the same time would see
        only those left: readers take turns, waiting up to _TURN_WAIT_SECONDS for one. The
        turn is an exclusive queue, which the broker deletes if this connection dies.
        """
        name = turn_queue_name(queue)
        deadline = time.monotonic() + _TURN_WAIT_SECONDS
        said = False
        while not self._take_turn(name):
            if time.monotonic() > deadline:
                raise BrokerLost(
                    f"Another reader of the dead letters of {queue!r} has held them for "
                    f"{_TURN_WAIT_SECONDS:g} s (queue {name!r}); try again once it is done."
                )
            if not said:
                said = True
                self._tell(f"Another reader holds the dead letters of {queue!r}; waiting for it.")
            with self._translated():
                self._connection.sleep(_TURN_POLL_SECONDS)
        try:
            yield
        finally:
            with self._translated():
                self._channel.queue_delete(name)

    def _take_turn(self, name: str) -> bool:
        try:
            self._channel.queue_declare(name, exclusive=True, auto_delete=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._open_channel()
            if exc.reply_code == _ACCESS_REFUSED:
                raise self._refused("declare", name, "configure") from exc
            if exc.reply_code == _RESOURCE_LOCKED:
                return False
            raise self._lost(exc) from exc
        except pika.exceptions.AMQPError as exc:
            raise self._lost(exc) from exc
        return True

    def peek(self, queue: str) -> list[Delivery]:
        """Every message ready in `queue`, oldest first, left in place."""
        with self._translated():
            channel = self._connection.channel()
        taken = []
        try:
            for _ in range(self.depth_if_any(queue)):
                with self._translated(("look at the messages of", queue, "read")):
                    method, properties, body = channel.basic_get(queue, auto_ack=False)
                if method is None:
                    break
                taken.append(Delivery(method.delivery_tag, body, dict(properties.headers or {})))
        finally:
            if channel.is_open:
                with self._translated():
                    channel.close()  # unacked messages go back to the queue in their places
        return taken

    def purge(self, queue: str) -> int:
        """Delete every ready message in `queue`; returns how many."""
        with self._translated(("purge", queue, "read")):
            return int(self._channel.queue_purge(queue).method.message_count)

    def serve(self, seconds: float) -> None:
        """Answer the broker (heartbeats) for `seconds`; 0 answers what is waiting and returns.

        Raises AckTimedOut when the broker took back what this session holds.
        """
        with self._translated():
            if seconds > 0:
                self._connection.sleep(seconds)
            else:
                self._connection.process_data_events(time_limit=0)
        if self._channel.is_closed:
            # The broker closed the channel, keeping the connection, while this only answered
            # heartbeats: what ends a held delivery is the acknowledgement timeout.
            raise AckTimedOut("RabbitMQ closed the channel holding the item.", None)

    def _open_channel(self) -> None:
        """Open the channel, also after the broker closed it over an error."""
        with self._translated():
            self._channel = self._connection.channel()
        self._confirming = False

    def _lost(self, exc: BaseException) -> BrokerLost:
        if isinstance(exc, pika.exceptions.ChannelClosedByBroker) and _ACK_TIMEOUT.search(
            exc.reply_text
        ):
            limit = _ACK_TIMEOUT_LIMIT.search(exc.reply_text)
            return AckTimedOut(
                f"RabbitMQ took the message back ({exc.reply_text}).",
                int(limit.group(1)) / 1000 if limit else None,
            )
        if isinstance(exc, pika.exceptions.ConnectionBlockedTimeout):
            # A blocking connection hears of the alarm, and which one, only after this.
            whose = f"this {self._purpose}'s "
            return BrokerLost(blocked_too_long(self.settings, "", whose) + ".")
        return BrokerLost(f"Lost the connection to RabbitMQ ({exc!r}).")

    def _refused(self, operation: str, queue: str, permission: str) -> ConfigError:
        return ConfigError(refusal(self.settings, operation, queue, permission))

    @contextmanager
    def _translated(self, refusal: tuple[str, str, str] | None = None) -> Iterator[None]:
        """pika's errors as the kit's: a refusal by `refusal`'s (operation, queue,
        permission), anything else a lost connection."""
        try:
            yield
        except pika.exceptions.ChannelClosedByBroker as exc:
            if refusal is None or exc.reply_code != _ACCESS_REFUSED:
                raise self._lost(exc) from exc
            self._open_channel()
            raise self._refused(*refusal) from exc
        except pika.exceptions.AMQPError as exc:
            raise self._lost(exc) from exc


def refusal(settings: Settings, operation: str, queue: str, permission: str) -> str:
    """What a refusal says: which user may not do what to which queue, and what to grant."""
    user = urlsplit(settings.broker_urls[0]).username or "guest"
    return (
        f"RabbitMQ does not let user {user!r} {operation} queue {queue!r}: it needs the "
        f"{permission!r} permission on it in its virtual host; grant it (rabbitmqctl "
        "set_permissions, or 'make broker' locally) or set QUEUE to one it may use."
    )


def alarm_name(reason: str) -> str:
    """What RabbitMQ's reason for blocking a connection ('low on memory') calls the alarm."""
    kinds = [kind for kind in ("memory", "disk") if kind in reason]
    return f"{' and '.join(kinds)} alarm" if kinds else f"alarm: {reason or 'unnamed'}"


def blocked_too_long(settings: Settings, alarm: str, whose: str = "") -> str:
    """Why `whose` publishing gave up: the broker blocked it longer than the setting."""
    return (
        f"RabbitMQ blocked {whose}publishing for {settings.broker_blocked_seconds:g} s "
        f"({alarm or 'a memory or disk alarm'}); free memory or disk on the broker, or wait longer "
        "with BROKER_BLOCKED_SECONDS"
    )


def _connect(settings: Settings, purpose: str) -> BlockingConnection:
    """Open a blocking connection to the first node that answers, retrying for
    BROKER_RETRY_SECONDS while none does.

    Raises BrokerUnavailable with a one-line, masked message: at once for refused credentials,
    after the retries for an unreachable broker.
    """
    params = connection_parameters(settings, purpose)
    where = mask_url(settings.broker_url)
    deadline = time.monotonic() + settings.broker_retry_seconds
    delay = _FIRST_RETRY_SECONDS
    while True:
        try:
            return pika.BlockingConnection(params)
        except pika.exceptions.ProbableAuthenticationError as exc:
            # pika calls any close while logging in an authentication error, also a node that
            # drops the connection as it starts or stops: that passes, like an unreachable node.
            if _REFUSED_LOGIN.search(str(exc)):
                raise BrokerUnavailable(
                    f"RabbitMQ at {where} refused the credentials; check the user and password "
                    "in BROKER_URL."
                ) from exc
            failure, reason = exc, "it closed the connection while logging in"
        except pika.exceptions.ProbableAccessDeniedError as exc:
            # pika calls any close while a connection opens a denial, also a node's shutdown
            # or a vhost still starting: those pass, like an unreachable node.
            if not _STOPPING.search(str(exc)):
                raise BrokerUnavailable(
                    f"RabbitMQ at {where} denied access to the virtual host; check the vhost in "
                    "BROKER_URL and the user's permissions."
                ) from exc
            failure, reason = exc, "stopping or starting"
        except (pika.exceptions.AMQPConnectionError, OSError) as exc:
            failure, reason = exc, _reason(exc)
        except AMQPConnectorStackTimeout as exc:
            # A paused node or a wedged port-forward: TCP connects, AMQP never answers.
            seconds = _stack_timeout(params)
            failure, reason = exc, f"it took the connection, then no AMQP in {seconds:g} s"
        if time.monotonic() + delay > deadline or _is_certificate_error(failure):
            raise BrokerUnavailable(
                f"Cannot reach RabbitMQ at {where} ({reason}). "
                "Start it with 'make broker' or set BROKER_URL."
            ) from failure
        log.warning("RabbitMQ at %s: %s; retrying in %.1f s.", where, reason, delay)
        time.sleep(delay)
        delay = min(delay * 2, _MAX_RETRY_SECONDS)


def _stack_timeout(params: list[pika.URLParameters]) -> float:
    """How long a connection attempt waits for the broker's AMQP handshake."""
    return max(float(each.stack_timeout or 0) for each in params)


def connection_parameters(settings: Settings, purpose: str) -> list[pika.URLParameters]:
    """Parameters for each node BROKER_URL names, with a connection name that says who and
    why; a connection tries them in turn."""
    return [_parameters(url, settings, purpose) for url in settings.broker_urls]


def _parameters(url: str, settings: Settings, purpose: str) -> pika.URLParameters:
    try:
        params = pika.URLParameters(url)
    except ValueError as exc:  # an option after '?' pika cannot use
        reason = str(exc).split(": ValueError(")[0]
        if reason.startswith("malformed node"):
            reason = "ssl_options and tcp_options take a Python dict literal"
        raise ConfigError(
            f"BROKER_URL {mask_url(url)!r} has an option pika cannot use ({reason}); see "
            "pika's URLParameters for the options and their values."
        ) from None
    # Under a memory or disk alarm the broker blocks a publishing connection; without a
    # timeout, pika would wait for it for ever.
    params.blocked_connection_timeout = settings.broker_blocked_seconds
    if purpose == "worker" and params.heartbeat is None:
        params.heartbeat = WORKER_HEARTBEAT_SECONDS
    params.client_properties = {
        "connection_name": f"jobkit-{purpose}@{socket.gethostname()}:{os.getpid()}"
    }
    if settings.broker_ca_file and params.ssl_options is not None:
        context = ssl.create_default_context(cafile=settings.broker_ca_file)
        params.ssl_options = pika.SSLOptions(context, params.host)
    return params


def _is_certificate_error(exc: BaseException) -> bool:
    """True when the cause is a refused TLS certificate, which no retry will mend."""
    return isinstance(_innermost(exc), ssl.SSLCertVerificationError)


def _innermost(exc: BaseException) -> BaseException:
    """pika nests the cause of a connection failure in args[0] or in .exception."""
    while True:
        inner = exc.args[0] if exc.args else getattr(exc, "exception", None)
        if not isinstance(inner, BaseException):
            return exc
        exc = inner


def _reason(exc: BaseException) -> str:
    """The innermost readable cause of a connection failure, e.g. 'connection refused'."""
    exc = _innermost(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {exc.verify_message}; set BROKER_CA_FILE"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
