"""NSQ: one channel per cozemq group, FIN/REQ/TOUCH settles, an envelope for key and headers.

Producing: PUB, or MPUB for a batch (split to stay under nsqd's --max-body-size), over one
pynsq Writer. Consuming: a pynsq Reader per consumer subscribes ``topic``/``group`` on every
known nsqd; SUB creates the topic and the channel, so a group registered before any publish
gets every later message. pynsq's own settling is off: ack=FIN, nack(delay)=REQ with the
delay (NSQ's native delayed requeue), extend=TOUCH, delivery_count = the message's attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import nsq
from nsq import protocol

from cozemq.backend import (
    Backend,
    Capabilities,
    Delivery,
    SubscribeSpec,
    Subscription,
    take_batch,
)
from cozemq.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigurationError,
    InvalidArgument,
    MessageTooLarge,
)
from cozemq.message import OutgoingMessage
from cozemq.settings import Settings, load_settings, masked

from . import envelope
from .client import Address, Reader, Writer, error_text
from .connection import Addresses, lookupd_nodes, parse_name_server, tls_options
from .settings import NsqSettings

log = logging.getLogger("cozemq.nsq")

_NAME = re.compile(r"^[.a-zA-Z0-9_-]+(#ephemeral)?$")
MAX_NAME = 64
MAX_REQ_MS = 60 * 60 * 1000
"""nsqd's default --max-req-timeout (1 h): longer nack delays are clamped to it."""
RECONNECT_EVERY = 0.25
PUBLISH_TIMEOUT = 5.0
CLOSE_FLUSH = 1.0


class NsqDelivery(Delivery):
    __slots__ = ("_conn", "_message")
    inline_settle = True  # FIN/REQ are written to the connection, never awaited

    def __init__(self, conn: Any, message: Any) -> None:
        body, key, headers = envelope.decode(message.body)
        super().__init__(
            body, key=key, headers=headers,
            id=message.id.decode("ascii", "replace") if isinstance(message.id, bytes)
            else str(message.id),
            delivery_count=max(1, int(message.attempts)),
            timestamp=datetime.fromtimestamp(message.timestamp / 1e9, UTC),
        )
        self._conn = conn
        self._message = message

    def _check(self, what: str) -> None:
        if self._conn.closed():
            raise BrokerUnavailable(
                f"{what}: the connection that delivered message {self.id} is gone; nsqd "
                "redelivers it after its msg timeout"
            )

    async def ack(self) -> None:
        self.ack_now()

    def ack_now(self) -> None:
        self._check("FIN")
        self._message.finish()

    async def nack(self, delay: float) -> None:
        self._check("REQ")
        time_ms = max(0, min(MAX_REQ_MS, round(delay * 1000)))
        self._message.requeue(backoff=False, time_ms=time_ms)

    async def extend(self) -> None:
        if self._message.has_responded():
            return
        self._check("TOUCH")
        self._message.touch()


class NsqSubscription(Subscription):
    def __init__(self, reader: Reader, queue: asyncio.Queue[NsqDelivery],
                 offer: list[Callable[[Delivery], bool]]) -> None:
        self.reader = reader
        self.queue = queue
        self.offer = offer
        self._watchdog = asyncio.ensure_future(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        while True:
            await asyncio.sleep(RECONNECT_EVERY)
            self.reader.reconnect_missing()

    async def fetch(self, max_messages: int, timeout: float) -> Sequence[Delivery]:
        return await take_batch(self.queue, max_messages, timeout)

    def deliver_directly(self, offer: Callable[[Delivery], bool]) -> None:
        self.offer[:] = [offer]

    async def close(self) -> None:
        """RDY 0, give back what was received and not handed out, flush, disconnect."""
        self._watchdog.cancel()
        reader = self.reader
        reader.draining = True
        with contextlib.suppress(Exception):
            reader.set_max_in_flight(0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_FLUSH
        while True:
            while not self.queue.empty():
                await _give_back(self.queue.get_nowait())
            in_flight = sum(c.in_flight for c in reader.conns.values())
            if not in_flight or loop.time() > deadline:
                break
            await asyncio.sleep(0.01)  # messages already on the wire when RDY 0 went out
        for conn in list(reader.conns.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.send(protocol.nop()), CLOSE_FLUSH)
        reader.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watchdog


async def _give_back(delivery: NsqDelivery) -> None:
    with contextlib.suppress(Exception):
        await delivery.nack(0)


class NsqBackend(Backend):
    name = "nsq"
    capabilities = Capabilities(
        persistent=False,
        redelivery=True,
        replays_to_new_groups=False,
        consumer_groups=True,
        ordering_by_key=False,
        native_headers=False,
        delayed_redelivery=True,
        deduplication=False,
        ack_deadline=True,
        max_message_size=1048576 - envelope.OVERHEAD,
    )
    dead_letter_suffix = ".dlq"

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        super().__init__(settings, env)
        self.nsq_settings = own = load_settings(NsqSettings, env)
        self.addresses: Addresses = parse_name_server(settings.name_server)
        self._tls = tls_options(own)
        self.ack_extend_interval = own.msg_timeout / 3  # type: ignore[misc]
        self.refine_capabilities(max_message_size=own.max_msg_size - envelope.OVERHEAD)
        self.writer: Writer | None = None
        self.nsqd: list[Address] = list(self.addresses.nsqd)
        self._subscriptions: set[NsqSubscription] = set()

    # -- describing -------------------------------------------------------------------------

    def describe(self) -> str:
        return "nsq " + ",".join(self.addresses.shown)

    def shown_settings(self) -> dict[str, str]:
        return masked(self.nsq_settings)

    def _conn_kwargs(self, *, reader: bool) -> dict[str, Any]:
        own = self.nsq_settings
        kwargs: dict[str, Any] = {
            "timeout": float(min(self.settings.connect_timeout, 5.0)),
            "hostname": own.client_name or socket.gethostname(),
            "user_agent": "cozemq-nsq/0.1 pynsq/" + nsq.__version__,
        }
        if own.auth_secret is not None:
            kwargs["auth_secret"] = own.auth_secret.get_secret_value()
        if self._tls is not None:
            kwargs["tls_v1"] = True
            kwargs["tls_options"] = dict(self._tls)
        if reader:
            kwargs["msg_timeout"] = own.msg_timeout
        return kwargs

    # -- connecting -------------------------------------------------------------------------

    async def connect(self) -> None:
        timeout = self.settings.connect_timeout
        if self.addresses.lookupd:
            try:
                found = await lookupd_nodes(self.addresses.lookupd, min(timeout, 5.0))
            except BrokerUnavailable:
                if not self.addresses.nsqd:
                    raise
                found = []
            self.nsqd = list(dict.fromkeys([*self.addresses.nsqd, *found]))
        writer = Writer(self.nsqd, **self._conn_kwargs(reader=False))
        try:
            await asyncio.wait_for(writer.ready.wait(), timeout)
        except TimeoutError:
            writer.close()
            reason = writer.last_error or "no answer"
            raise BrokerUnavailable(
                f"nsqd at {', '.join(f'{h}:{p}' for h, p in self.nsqd)} did not accept a "
                f"connection within {timeout:g}s (COZEMQ_CONNECT_TIMEOUT): {_explain(reason)}"
            ) from None
        self.writer = writer

    async def ping(self) -> None:
        if self.writer is None or not self.writer.open_conns():
            raise BrokerUnavailable(f"{self.describe()}: no open connection to nsqd")

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        self._subscriptions.clear()
        if self.writer is not None:
            writer, self.writer = self.writer, None
            for conn in writer.open_conns():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.send(protocol.nop()), CLOSE_FLUSH)
            writer.close()

    # -- names and sizes --------------------------------------------------------------------

    def validate_name(self, kind: str, name: str) -> None:
        if not (1 <= len(name) <= MAX_NAME) or not _NAME.match(name):
            raise InvalidArgument(
                f"{kind} {name!r}: NSQ names are 1-64 characters of letters, digits, '.', '_' "
                "and '-', optionally ending in '#ephemeral' (e.g. 'opencoze_knowledge')"
            )

    def message_size(self, message: OutgoingMessage) -> int:
        return envelope.encoded_size(message.body, message.key, message.headers)

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        writer = self.writer
        if writer is None:
            raise BrokerUnavailable("connect() first")
        if not writer.open_conns():
            writer.reconnect_missing()
            raise BrokerUnavailable(
                f"no open connection to nsqd ({_explain(writer.last_error or 'reconnecting')})"
            )
        bodies = [envelope.encode(m.body, m.key, m.headers) for m in messages]
        for chunk in _chunks(bodies, self.nsq_settings.max_body_size):
            await self._send(writer, topic, chunk)

    async def _send(self, writer: Writer, topic: str, bodies: list[bytes]) -> None:
        command, payload = ("pub", bodies[0]) if len(bodies) == 1 else ("mpub", bodies)
        timeout = min(PUBLISH_TIMEOUT, self.settings.send_timeout)
        try:
            await writer.send(command, topic, payload, timeout)
        except TimeoutError:
            raise BrokerUnavailable(
                f"nsqd did not answer {command.upper()} to {topic!r} within {timeout:g}s"
            ) from None
        except (protocol.SendError, protocol.ConnectionClosedError,
                protocol.IntegrityError) as exc:
            raise BrokerUnavailable(
                f"{command.upper()} to {topic!r} failed: {error_text(exc)}"
            ) from None
        except nsq.Error as exc:
            text = error_text(exc)
            if "E_BAD_MESSAGE" in text and "too big" in text:
                raise MessageTooLarge(
                    f"nsqd refused the message as too big ({text}); set NSQ_MAX_MSG_SIZE to "
                    "nsqd's --max-msg-size"
                ) from None
            if "E_BAD_TOPIC" in text:
                raise InvalidArgument(f"nsqd refused topic {topic!r}: {text}") from None
            if "E_AUTH" in text or "E_UNAUTHORIZED" in text:
                raise BrokerError(f"nsqd refused {command.upper()} to {topic!r}: "
                                  f"{_explain(text)}") from None
            raise BrokerError(f"nsqd refused {command.upper()} to {topic!r}: {text}") from None

    # -- consuming --------------------------------------------------------------------------

    async def subscribe(self, spec: SubscribeSpec) -> Subscription:
        own = self.nsq_settings
        queue: asyncio.Queue[NsqDelivery] = asyncio.Queue()
        reader: Reader

        offer: list[Callable[[Delivery], bool]] = []  # the core's, once it starts

        def sink(conn: Any, message: Any) -> None:
            delivery = NsqDelivery(conn, message)
            if reader.draining:
                message.requeue(backoff=False, time_ms=0)
                return
            # Straight to the core while nothing waits in the buffer (keeps arrival order).
            if offer and queue.empty() and offer[0](delivery):
                return
            queue.put_nowait(delivery)

        prefetch = spec.prefetch if own.max_in_flight is None else min(spec.prefetch,
                                                                        own.max_in_flight)
        reader = Reader(
            spec.topic, spec.group, sink,
            nsqd=list(self.nsqd), lookupd=list(self.addresses.lookupd),
            max_in_flight=prefetch, lookupd_poll_interval=own.lookupd_poll_interval,
            **self._conn_kwargs(reader=True),
        )
        timeout = self.settings.connect_timeout
        try:
            await asyncio.wait_for(asyncio.shield(reader.subscribed), timeout)
        except TimeoutError:
            reader.close()
            raise BrokerUnavailable(
                f"SUB {spec.topic}/{spec.group} was not acknowledged by nsqd within "
                f"{timeout:g}s: {_explain(reader.last_error or 'no answer')}"
            ) from None
        subscription = NsqSubscription(reader, queue, offer)
        self._subscriptions.add(subscription)
        return _Tracked(subscription, self._subscriptions)


class _Tracked(Subscription):
    """The subscription, forgotten by the backend once the core closes it."""

    def __init__(self, inner: NsqSubscription, registry: set[NsqSubscription]) -> None:
        self.inner = inner
        self._registry = registry

    async def fetch(self, max_messages: int, timeout: float) -> Sequence[Delivery]:
        return await self.inner.fetch(max_messages, timeout)

    def deliver_directly(self, offer: Callable[[Delivery], bool]) -> None:
        self.inner.deliver_directly(offer)

    async def close(self) -> None:
        self._registry.discard(self.inner)
        await self.inner.close()


def _chunks(bodies: list[bytes], max_body: int) -> list[list[bytes]]:
    """Split a batch into MPUBs of at most ``max_body`` bytes (4 + sum of 4 + len), in order."""
    chunks: list[list[bytes]] = []
    current: list[bytes] = []
    size = 4
    for body in bodies:
        weight = 4 + len(body)
        if current and size + weight > max_body:
            chunks.append(current)
            current, size = [], 4
        current.append(body)
        size += weight
    if current:
        chunks.append(current)
    return chunks


def _explain(reason: str) -> str:
    if "E_AUTH" in reason or "E_UNAUTHORIZED" in reason or "AUTH" in reason:
        return f"{reason}: nsqd refused the credentials (check NSQ_AUTH_SECRET)"
    return reason


__all__ = ["ConfigurationError", "NsqBackend", "NsqDelivery", "NsqSubscription"]
