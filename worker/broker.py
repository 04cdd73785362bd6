"""The queue contract: connecting to RabbitMQ and declaring the queues, the same everywhere."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import ssl
import time
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from worker.errors import BrokerUnavailable, ConfigError
from worker.settings import Settings, mask_url

log = logging.getLogger(__name__)

_FIRST_RETRY_SECONDS = 0.5
_MAX_RETRY_SECONDS = 8.0

# A message is delivered at most DELIVERY_LIMIT + 1 times, then the broker dead-letters it.
DELIVERY_LIMIT = 3
REASON_HEADER = "jobkit-reason"
ATTEMPTS_HEADER = "jobkit-attempts"


def connect(settings: Settings, purpose: str) -> BlockingConnection:
    """Open a blocking connection, retrying an unreachable broker for BROKER_RETRY_SECONDS.

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
            raise BrokerUnavailable(
                f"RabbitMQ at {where} refused the credentials; check the user and password in "
                "BROKER_URL."
            ) from exc
        except pika.exceptions.ProbableAccessDeniedError as exc:
            raise BrokerUnavailable(
                f"RabbitMQ at {where} denied access to the virtual host; check the vhost in "
                "BROKER_URL and the user's permissions."
            ) from exc
        except (pika.exceptions.AMQPConnectionError, OSError) as exc:
            reason = _reason(exc)
            if time.monotonic() + delay > deadline or _is_certificate_error(exc):
                raise BrokerUnavailable(
                    f"Cannot reach RabbitMQ at {where} ({reason}). "
                    "Start it with 'make broker' or set BROKER_URL."
                ) from exc
            log.warning("RabbitMQ at %s: %s; retrying in %.1f s.", where, reason, delay)
            time.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_SECONDS)


def connection_parameters(settings: Settings, purpose: str) -> pika.URLParameters:
    """Parameters from BROKER_URL, with a connection name that says who and why."""
    params = pika.URLParameters(settings.broker_url)
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


ACCESS_REFUSED = 403  # the AMQP reply code when a user lacks a permission


def queue_arguments(queue: str) -> dict[str, Any]:
    """The work queue's arguments; every declaration must use exactly these."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": f"{queue}.dead",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # required by at-least-once dead-lettering
    }


def declare_queue(channel: BlockingChannel, queue: str) -> int:
    """Declare the work queue and its dead-letter queue; return the work queue's ready messages."""
    try:
        channel.queue_declare(f"{queue}.dead", durable=True, arguments={"x-queue-type": "classic"})
        result = channel.queue_declare(queue, durable=True, arguments=queue_arguments(queue))
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == ACCESS_REFUSED:
            raise ConfigError(
                f"RabbitMQ does not let this user use queue {queue!r} ({exc.reply_text}); set "
                "QUEUE to a queue it may use, or grant it this one ('make broker' does)."
            ) from exc
        raise ConfigError(
            f"Queue {queue!r} exists with other arguments than this kit declares "
            f"({exc.reply_text}); delete it or set QUEUE to another name."
        ) from exc
    return int(result.method.message_count)


def queue_depth(channel: BlockingChannel, queue: str) -> int:
    """Messages ready in `queue` (not counting those a worker holds); the queue must exist."""
    try:
        result = channel.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        raise ConfigError(f"Queue {queue!r} does not exist; publish to it first.") from exc
    return int(result.method.message_count)


def item_properties(name: str) -> pika.BasicProperties:
    """Properties of the message carrying item `name`: persistent text with a stable id."""
    return pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
        content_type="text/plain",
        message_id=hashlib.sha1(name.encode()).hexdigest(),
    )


def delivery_count(properties: pika.BasicProperties) -> int:
    """How many times the broker delivered this message before (0 on the first delivery)."""
    headers = properties.headers or {}
    return int(headers.get("x-delivery-count", 0))
