"""EventBus: the contract users call. Validates once, then hands bytes to the backend."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from . import registry
from .backend import Backend, Capabilities, SubscribeSpec
from .consumer import Consumer, ConsumerOptions, ConsumerStats, Handler, as_handler_fn
from .errors import (
    BrokerUnavailable,
    BusClosed,
    EventBusError,
    InvalidArgument,
    MessageTooLarge,
    NotSupported,
)
from .headers import validate_headers, validate_key
from .message import OutgoingMessage
from .retry import Backoff, BackoffPolicy, as_backoff
from .settings import Settings, load_settings

log = logging.getLogger("cozemq")

BusT = TypeVar("BusT", bound="EventBus")

_KNOWN_TOPICS = 4096
SIZE_SLACK = 4096


class EventBus:
    """Send and consume through one broker, chosen by COZE_MQ_TYPE.

    ``async with EventBus.from_env() as bus:`` connects and, on exit, closes: consumers stop
    fetching, in-flight handlers get ``close_timeout`` seconds to finish and be acked, and the
    connection is closed. Use after close raises BusClosed.
    """

    def __init__(self, backend: Backend, settings: Settings) -> None:
        self.backend = backend
        self.settings = settings
        self._consumers: list[Consumer] = []
        self._connected = False
        self._closed = False
        self._connect_lock: asyncio.Lock | None = None
        self._valid_topics: set[str] = set()  # validated once, not on every send

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def from_env(cls: type[BusT], env: Mapping[str, str] | None = None) -> BusT:
        """Build (without connecting) from the environment, ``.env`` and ``env`` on top."""
        settings = load_settings(Settings, env)
        backend_cls = registry.backend_class(settings.mq_type)
        return cls(backend_cls(settings, env), settings)

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._connected else "new"
        return f"<EventBus {self.backend.describe()} {state}>"

    async def connect(self) -> None:
        """Reach the broker (idempotent). Raises BrokerUnavailable within connect_timeout."""
        self._check_open()
        if self._connected:
            return
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if not self._connected:
                await self.backend.connect()
                self._connected = True

    async def __aenter__(self: BusT) -> BusT:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- sending ----------------------------------------------------------------------------

    async def send_message(
        self,
        topic: str,
        body: bytes,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Send one message. Returns once the broker has accepted it.

        ``key`` is the sharding key: orderly consumers see one key's messages in send order.
        ``idempotency_key`` asks the broker to drop a resend with the same key (only where
        the backend declares deduplication; NotSupported elsewhere).
        """
        if type(body) is bytes and key is None and headers is None and idempotency_key is None:
            message = OutgoingMessage(body)  # the common case, nothing else to check
        else:
            message = self._outgoing(body, key, headers, idempotency_key)
        await self._publish(topic, (message,))

    async def send_batch(
        self, topic: str, bodies: Iterable[bytes], *, key: str | None = None
    ) -> None:
        """Send several messages in order, as one batch where the broker allows it.

        Every message is checked before any is sent, so a bad one sends none.
        """
        if key is not None:
            _check_key(key)
        # One pass: the key is checked once, each body only for its type.
        batch = [OutgoingMessage(body if type(body) is bytes else _as_bytes(body), key)
                 for body in bodies]
        if not batch:
            raise InvalidArgument("send_batch: bodies is empty; pass at least one message")
        await self._publish(topic, batch)

    def producer(self, topic: str) -> Producer:
        """Coze's topic-bound producer: ``send`` / ``batch_send`` to ``topic``."""
        self._check_open()
        self.backend.validate_name("topic", _require_name("topic", topic))
        return Producer(self, topic)

    def _outgoing(
        self,
        body: bytes,
        key: str | None,
        headers: Mapping[str, str] | None,
        idempotency_key: str | None,
    ) -> OutgoingMessage:
        if type(body) is not bytes:
            body = _as_bytes(body)
        if key is not None:
            _check_key(key)
        if idempotency_key is not None:
            if not self.capabilities.deduplication:
                raise NotSupported(
                    f"idempotency_key: the {self.backend.name} backend has no broker-side "
                    "deduplication"
                )
            if not isinstance(idempotency_key, str) or not idempotency_key:
                raise InvalidArgument("idempotency_key must be a non-empty str")
        if headers is not None:
            headers = validate_headers(headers)
        return OutgoingMessage(body, key, headers, idempotency_key)

    def _check_sizes(self, batch: Sequence[OutgoingMessage]) -> None:
        """After connecting: the broker may have told its real limit by then."""
        limit = self.backend.capabilities.max_message_size
        if limit is None:
            return
        # Measured exactly only near the limit: what any backend adds to a message without
        # key or headers is far below SIZE_SLACK, and measuring costs on every send.
        plain_below = limit - SIZE_SLACK
        for message in batch:
            if (len(message.body) < plain_below and message.key is None
                    and message.headers is None and message.idempotency_key is None):
                continue
            size = self.backend.message_size(message)
            if size > limit:
                raise MessageTooLarge(
                    f"message of {size} bytes exceeds the {self.backend.name} limit of "
                    f"{limit} bytes; nothing was sent"
                )

    async def _publish(self, topic: str, batch: Sequence[OutgoingMessage]) -> None:
        if not (isinstance(topic, str) and topic in self._valid_topics):
            self._check_topic(topic)
        if not self._connected or self._closed:
            await self.connect()
        self._check_sizes(batch)
        # Ride out a broker restart: retry while the broker is unreachable, up to
        # send_timeout. A retry after a lost acknowledgement can duplicate, never lose.
        deadline = time.monotonic() + self.settings.send_timeout
        pause = 0.05
        while True:
            try:
                await self.backend.publish(topic, batch)
                return
            except BrokerUnavailable:
                if self._closed or time.monotonic() + pause > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)

    def _check_topic(self, topic: str) -> None:
        self.backend.validate_name("topic", _require_name("topic", topic))
        if len(self._valid_topics) >= _KNOWN_TOPICS:
            self._valid_topics.clear()  # bounded: a service sending to ever-new topics
        self._valid_topics.add(topic)

    # -- consuming --------------------------------------------------------------------------

    async def register_consumer(
        self,
        topic: str,
        group: str,
        handler: Handler,
        *,
        orderly: bool = False,
        concurrency: int | None = None,
        max_deliveries: int | None = None,
        retry_backoff: float | Sequence[float] | BackoffPolicy | None = None,
        dead_letter_topic: str | None = None,
    ) -> ConsumerHandle:
        """Start consuming ``topic`` as a member of ``group``; returns once subscribed.

        The handler returns to acknowledge and raises to retry. After ``max_deliveries``
        attempts the message is sent to ``dead_letter_topic`` (default
        ``dead_letter_topic_for(topic)``, i.e. ``<topic>.dlq`` on most backends) with its
        headers, its attempt count and the error, then acknowledged.
        """
        self._check_open()
        fn = as_handler_fn(handler)
        self.backend.validate_name("topic", _require_name("topic", topic))
        self.backend.validate_name("group", _require_name("group", group))
        if orderly and not self.capabilities.ordering_by_key:
            raise NotSupported(
                f"orderly=True: the {self.backend.name} backend cannot keep order per key"
            )
        options = self._consumer_options(topic, orderly, concurrency, max_deliveries,
                                         retry_backoff, dead_letter_topic)
        await self.connect()
        spec = SubscribeSpec(topic=topic, group=group, orderly=orderly,
                             prefetch=options.concurrency)
        subscription = await self.backend.subscribe(spec)
        consumer = Consumer(
            backend=self.backend,
            subscription=subscription,
            spec=spec,
            handler=fn,
            options=options,
            dead_letter=self.backend.publish_one,
        )
        self._consumers.append(consumer)
        consumer.start()
        return ConsumerHandle(self, consumer)

    def _consumer_options(
        self,
        topic: str,
        orderly: bool,
        concurrency: int | None,
        max_deliveries: int | None,
        retry_backoff: float | Sequence[float] | BackoffPolicy | None,
        dead_letter_topic: str | None,
    ) -> ConsumerOptions:
        s = self.settings
        concurrency = s.concurrency if concurrency is None else concurrency
        max_deliveries = s.max_deliveries if max_deliveries is None else max_deliveries
        if not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgument(f"concurrency must be an int >= 1, got {concurrency!r}")
        if not isinstance(max_deliveries, int) or max_deliveries < 1:
            raise InvalidArgument(f"max_deliveries must be an int >= 1, got {max_deliveries!r}")
        backoff = (
            Backoff(initial=s.retry_backoff, maximum=s.retry_backoff_max)
            if retry_backoff is None
            else as_backoff(retry_backoff)
        )
        dlq = dead_letter_topic or self.dead_letter_topic_for(topic)
        self.backend.validate_name("dead_letter_topic", dlq)
        if dlq == topic:
            raise InvalidArgument("dead_letter_topic must differ from the topic it serves")
        return ConsumerOptions(orderly, concurrency, max_deliveries, backoff, dlq)

    async def create_topic(self, topic: str, *, orderly: bool = False) -> None:
        """Create a topic ahead of use, where the broker needs or allows it (idempotent)."""
        self.backend.validate_name("topic", _require_name("topic", topic))
        await self.connect()
        await self.backend.create_topic(topic, orderly=orderly)

    def dead_letter_topic_for(self, topic: str) -> str:
        """The default dead-letter topic of ``topic`` on this backend."""
        return topic + (self.settings.dead_letter_suffix or self.backend.dead_letter_suffix)

    # -- closing ----------------------------------------------------------------------------

    async def close(self, timeout: float | None = None) -> None:
        """Drain consumers within ``timeout`` (default COZEMQ_CLOSE_TIMEOUT), then disconnect.

        Idempotent. Handlers still running at the deadline are cancelled; their messages are
        not acked and come back.
        """
        if self._closed:
            return
        self._closed = True
        deadline = self.settings.close_timeout if timeout is None else timeout
        started = time.monotonic()
        consumers, self._consumers = self._consumers, []
        await asyncio.gather(*(c.stop(deadline) for c in consumers), return_exceptions=True)
        try:
            await self.backend.close()
        except EventBusError as exc:
            log.warning("closing %s: %s", self.backend.describe(), exc)
        log.debug("closed %s in %.3fs", self.backend.describe(), time.monotonic() - started)

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise BusClosed("this EventBus is closed; create a new one")

    async def _remove(self, consumer: Consumer, timeout: float | None) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)
        await consumer.stop(self.settings.close_timeout if timeout is None else timeout)


class ConsumerHandle:
    """What register_consumer returns: stats, and a way to stop just this consumer."""

    def __init__(self, bus: EventBus, consumer: Consumer) -> None:
        self._bus = bus
        self._consumer = consumer

    @property
    def stats(self) -> ConsumerStats:
        return self._consumer.read_stats()

    @property
    def topic(self) -> str:
        return self._consumer.spec.topic

    @property
    def group(self) -> str:
        return self._consumer.spec.group

    async def stop(self, timeout: float | None = None) -> None:
        """Stop this consumer gracefully (the same drain as EventBus.close). Idempotent."""
        await self._bus._remove(self._consumer, timeout)


class Producer:
    """Coze's Producer, bound to one topic."""

    def __init__(self, bus: EventBus, topic: str, *, retries: int = 0,
                 owns_bus: bool = False) -> None:
        self.bus = bus
        self.topic = topic
        self.retries = retries
        self._owns_bus = owns_bus

    def __repr__(self) -> str:
        return f"<Producer topic={self.topic!r} on {self.bus!r}>"

    async def send(
        self,
        body: bytes,
        *,
        sharding_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        await self._with_retries(
            lambda: self.bus.send_message(self.topic, body, key=sharding_key, headers=headers)
        )

    async def batch_send(self, bodies: Iterable[bytes], *, sharding_key: str | None = None) -> None:
        batch = list(bodies)
        await self._with_retries(lambda: self.bus.send_batch(self.topic, batch, key=sharding_key))

    async def _with_retries(self, send: Callable[[], Awaitable[None]]) -> None:
        """Coze's ``retries``: try again on errors a retry can help (broker unavailable)."""
        for number in range(self.retries + 1):
            if number:
                await asyncio.sleep(min(2.0, 0.1 * 2 ** (number - 1)))
            try:
                await send()
                return
            except EventBusError as exc:
                if not exc.retriable or number == self.retries:
                    raise

    async def close(self) -> None:
        """Close the bus too if this producer created it (as new_producer does)."""
        if self._owns_bus:
            await self.bus.close()


def _as_bytes(body: object) -> bytes:
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise InvalidArgument(
        f"body must be bytes, got {type(body).__name__}"
        + ("; encode it first, e.g. body.encode()" if isinstance(body, str) else "")
    )


def _check_key(key: object) -> None:
    if not isinstance(key, str):
        raise InvalidArgument(f"key must be str or None, got {type(key).__name__}")
    validate_key(key)


def _require_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{kind} must be a non-empty str, got {name!r}")
    return name
