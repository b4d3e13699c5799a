"""COZE_MQ_TYPE=pulsar on pulsar-client's C++ core, bridged to asyncio without blocking the loop.

- Producers: one per topic, cached; batching on (key-based, so a batch never mixes keys and
  Key_Shared dispatch stays correct), ``block_if_queue_full``; the sharding key is the
  message's partition and ordering key; headers are message properties. Every send of a batch
  is handed to the client at once, in order, then all receipts are awaited.
- Consumers: a group is a subscription, Shared (members share the work) or Key_Shared when
  ``orderly`` (one key's messages go to one member, in order). New subscriptions start at
  the earliest message. No ack timeout and no client dead-letter policy: retry, backoff and
  dead-lettering are the core's.
- Callbacks from the client's threads reach the loop only through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import _pulsar
import pulsar
import pulsar.asyncio as pulsar_asyncio

from cozemq.backend import Backend, Capabilities, Delivery, SubscribeSpec, Subscription
from cozemq.errors import (
    BrokerError,
    BrokerUnavailable,
    BusClosed,
    ConfigurationError,
    EventBusError,
    InvalidArgument,
    MessageTooLarge,
)
from cozemq.message import OutgoingMessage
from cozemq.settings import Settings, load_settings, masked

from .connection import check_name, client_options, namespace_of, parse_service_url
from .settings import DEFAULT_MAX_MESSAGE_SIZE, PulsarSettings

log = logging.getLogger("cozemq.pulsar")
client_log = logging.getLogger("cozemq.pulsar.client")

METADATA_RESERVE = 1024
"""Bytes of maxMessageSize kept for the message metadata (producer name, sequence id, times,
batch header). The C++ client counts payload plus metadata against the broker's limit."""

PROPERTY_OVERHEAD = 8
"""Protobuf framing per property or key, counted on top of its text."""

MAX_PENDING_SENDS = 500
"""Sends handed to one producer and not yet confirmed; below the client's queue (1000), so
``block_if_queue_full`` never has to block the event loop's thread."""

PROBE_TOPIC = "__cozemq_probe"

Result = _pulsar.Result

TRANSIENT = frozenset({
    Result.Timeout, Result.ConnectError, Result.NotConnected, Result.ServiceUnitNotReady,
    Result.LookupError, Result.TooManyLookupRequestException, Result.BrokerPersistenceError,
    Result.BrokerMetadataError, Result.ProducerQueueIsFull, Result.MemoryBufferIsFull,
    Result.ReadError, Result.ProducerBlockedQuotaExceededError,
    Result.ProducerBlockedQuotaExceededException, Result.UnknownError, Result.AlreadyClosed,
    Result.ProducerNotInitialized, Result.ConsumerNotInitialized, Result.Interrupted,
    Result.ProducerBusy, Result.ConsumerBusy,
})
AUTH = frozenset({Result.AuthenticationError, Result.AuthorizationError,
                  Result.ErrorGettingAuthenticationData})


def _result_of(exc: BaseException) -> Any:
    if isinstance(exc, pulsar_asyncio.PulsarException):
        return exc.error()
    return None


def _complete(future: asyncio.Future[Any], result: Any, value: Any) -> None:
    """Called on the loop: settle ``future`` with a client callback's outcome."""
    if future.done():
        return
    if result == Result.Ok:
        future.set_result(value)
    else:
        future.set_exception(pulsar_asyncio.PulsarException(result))


def _callback(future: asyncio.Future[Any], value_given: bool = True) -> Callable[..., None]:
    """A client callback (runs on a client thread) that settles ``future`` on its loop."""
    loop = future.get_loop()

    def done(result: Any, value: Any = None) -> None:
        loop.call_soon_threadsafe(_complete, future, result, value if value_given else None)

    return done


class PulsarBackend(Backend):
    name = "pulsar"
    dead_letter_suffix = ".dlq"
    capabilities = Capabilities(
        persistent=True,
        redelivery=True,
        replays_to_new_groups=True,
        consumer_groups=True,
        ordering_by_key=True,
        native_headers=True,
        delayed_redelivery=False,
        deduplication=False,
        ack_deadline=False,
        max_message_size=DEFAULT_MAX_MESSAGE_SIZE - METADATA_RESERVE,
        # The broker forgets redelivery counts when a subscription has no consumer left.
        attempts_survive_rejoin=False,
    )

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        super().__init__(settings, env)
        self.pulsar_settings = own = load_settings(PulsarSettings, env)
        if not settings.name_server:
            raise ConfigurationError(
                "set MQ_NAME_SERVER to the Pulsar broker, e.g. pulsar://127.0.0.1:6650"
            )
        self.url = parse_service_url(settings.name_server)
        self.namespace = namespace_of(own)
        self._options = client_options(own, self.url)
        self.refine_capabilities(max_message_size=own.max_message_size - METADATA_RESERVE)
        self.client: pulsar_asyncio.Client | None = None
        self._producers: dict[str, _Producer] = {}
        self._producer_locks: dict[str, asyncio.Lock] = {}
        self._subscriptions: set[PulsarSubscription] = set()

    # -- names and sizes ---------------------------------------------------------------------

    def topic_name(self, topic: str) -> str:
        return f"persistent://{self.namespace}/{topic}"

    def validate_name(self, kind: str, name: str) -> None:
        check_name(kind, name)

    def message_size(self, message: OutgoingMessage) -> int:
        size = len(message.body)
        if message.key is not None:  # sent twice: partition key and ordering key
            size += 2 * (len(message.key.encode()) + PROPERTY_OVERHEAD)
        for name, value in (message.headers or {}).items():
            size += len(name.encode()) + len(value.encode()) + PROPERTY_OVERHEAD
        return size

    def describe(self) -> str:
        return f"pulsar {self.url} namespace {self.namespace}"

    def shown_settings(self) -> dict[str, str]:
        return masked(self.pulsar_settings)

    # -- connection --------------------------------------------------------------------------

    async def connect(self) -> None:
        own = self.pulsar_settings
        timeout = self.settings.connect_timeout
        try:
            self.client = await asyncio.to_thread(
                pulsar_asyncio.Client, self.url,
                operation_timeout_seconds=max(1, round(own.operation_timeout)),
                connection_timeout_ms=max(100, int(timeout * 1000)),
                io_threads=1, message_listener_threads=1,
                logger=client_log, **self._options,
            )
        except Exception as exc:  # the client validates the URL and TLS files here
            raise ConfigurationError(
                f"pulsar client could not be created for {self.url}: {type(exc).__name__}"
            ) from None
        try:
            await asyncio.wait_for(self._probe(), timeout)
        except (TimeoutError, pulsar_asyncio.PulsarException) as exc:
            await self.close()
            raise self._connect_error(exc, timeout) from None

    def _connect_error(self, exc: BaseException, timeout: float) -> EventBusError:
        result = _result_of(exc)
        where = f"Pulsar at {self.url}"
        if result == Result.AuthorizationError:
            return BrokerError(
                f"{where} refused access to namespace {self.namespace}: the role in "
                "PULSAR_JWT_TOKEN has no permission there (grant produce/consume, or set "
                "PULSAR_TENANT/PULSAR_NAMESPACE)"
            )
        reason = result.name if result is not None else "timed out"
        if result in AUTH:
            hint = ("check PULSAR_JWT_TOKEN" if self.pulsar_settings.jwt_token
                    else "the broker requires authentication: set PULSAR_JWT_TOKEN")
            return BrokerUnavailable(
                f"{where} did not accept a connection within {timeout:g}s "
                f"(COZEMQ_CONNECT_TIMEOUT): {reason}; {hint}"
            )
        hint = ""
        if result in (None, Result.Timeout) and self.pulsar_settings.jwt_token is None:
            hint = " (if the broker requires authentication, set PULSAR_JWT_TOKEN)"
        elif result in (None, Result.Timeout):
            # Pulsar refuses a bad token by closing the connection; the client only sees that
            # as a timeout, so say so rather than guess.
            hint = " (a broker that refuses the token also ends this way: check PULSAR_JWT_TOKEN)"
        return BrokerUnavailable(
            f"{where} did not accept a connection within {timeout:g}s "
            f"(COZEMQ_CONNECT_TIMEOUT): {reason}{hint}"
        )

    async def _probe(self) -> None:
        """A topic lookup: needs a connection, an accepted token and the namespace."""
        await self._client.get_topic_partitions(self.topic_name(PROBE_TOPIC))

    @property
    def _client(self) -> pulsar_asyncio.Client:
        if self.client is None:
            raise BusClosed("the pulsar backend is not connected")
        return self.client

    async def ping(self) -> None:
        try:
            await asyncio.wait_for(self._probe(), self.settings.connect_timeout)
        except (TimeoutError, pulsar_asyncio.PulsarException) as exc:
            raise BrokerUnavailable(f"Pulsar did not answer a lookup: {exc}") from None

    async def close(self) -> None:
        client, self.client = self.client, None
        producers = list(self._producers.values())
        self._producers.clear()
        for producer in producers:
            await producer.close()
        for subscription in list(self._subscriptions):
            await subscription.close()
        if client is not None:
            try:
                await asyncio.wait_for(client.close(), 10)
            except Exception as exc:
                log.debug("pulsar client close: %r", exc)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(client.shutdown)

    # -- producing ---------------------------------------------------------------------------

    async def _producer(self, topic: str) -> _Producer:
        producer = self._producers.get(topic)
        if producer is not None:
            return producer
        lock = self._producer_locks.setdefault(topic, asyncio.Lock())
        async with lock:
            producer = self._producers.get(topic)
            if producer is None:
                own = self.pulsar_settings
                try:
                    raw = await self._client.create_producer(
                        self.topic_name(topic),
                        send_timeout_millis=int(own.send_timeout * 1000),
                        block_if_queue_full=True,
                        batching_enabled=True,
                        batching_type=pulsar.BatchingType.KeyBased,
                        batching_max_messages=own.batching_max_messages,
                        batching_max_publish_delay_ms=int(own.batching_max_publish_delay * 1000),
                    )
                except pulsar_asyncio.PulsarException as exc:
                    raise self._error(exc, f"creating a producer for {topic!r}") from None
                producer = self._producers[topic] = _Producer(raw)
        return producer

    async def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        producer = await self._producer(topic)
        try:
            await producer.send_all(messages)
        except pulsar_asyncio.PulsarException as exc:
            if exc.error() in (Result.AlreadyClosed, Result.ProducerNotInitialized):
                self._producers.pop(topic, None)
            raise self._error(exc, f"sending to {topic!r}") from None

    def _error(self, exc: pulsar_asyncio.PulsarException, doing: str) -> EventBusError:
        result = exc.error()
        if result == Result.MessageTooBig:
            return MessageTooLarge(
                f"{doing}: the broker's maxMessageSize is smaller than this message "
                f"(PULSAR_MAX_MESSAGE_SIZE is {self.pulsar_settings.max_message_size})"
            )
        if result in AUTH:
            return BrokerError(f"{doing}: Pulsar refused it ({result.name}); check "
                               "PULSAR_JWT_TOKEN and the role's permissions")
        if result in (Result.InvalidTopicName, Result.TopicNotFound):
            return InvalidArgument(f"{doing}: Pulsar says {result.name}")
        if result in TRANSIENT:
            return BrokerUnavailable(f"{doing}: Pulsar is unavailable ({result.name})")
        return BrokerError(f"{doing}: Pulsar refused it ({result.name})")

    # -- consuming ---------------------------------------------------------------------------

    async def subscribe(self, spec: SubscribeSpec) -> Subscription:
        own = self.pulsar_settings
        kind = pulsar.ConsumerType.KeyShared if spec.orderly else pulsar.ConsumerType.Shared
        try:
            consumer = await self._client.subscribe(
                self.topic_name(spec.topic), spec.group,
                consumer_type=kind,
                receiver_queue_size=max(1, min(spec.prefetch, own.receiver_queue_size)),
                negative_ack_redelivery_delay_ms=int(own.nack_delay * 1000),
                initial_position=pulsar.InitialPosition.Earliest,
            )
        except pulsar_asyncio.PulsarException as exc:
            if exc.error() == Result.ConsumerBusy:
                raise InvalidArgument(
                    f"group {spec.group!r} on {spec.topic!r}: Pulsar refused the subscription "
                    "(ConsumerBusy): a group cannot mix orderly and non-orderly members"
                ) from None
            raise self._error(exc, f"subscribing {spec.group!r} to {spec.topic!r}") from None
        subscription = PulsarSubscription(consumer, spec, self._subscriptions.discard)
        self._subscriptions.add(subscription)
        return subscription


class _Producer:
    """One cached producer and a bound on sends awaiting their receipt."""

    def __init__(self, producer: pulsar_asyncio.Producer) -> None:
        self._producer = producer
        self._raw: Any = producer._producer
        self._room = asyncio.Semaphore(MAX_PENDING_SENDS)

    async def send_all(self, messages: Sequence[OutgoingMessage]) -> None:
        loop = asyncio.get_running_loop()
        receipts: list[asyncio.Future[Any]] = []
        for message in messages:
            await self._room.acquire()
            builder = _pulsar.MessageBuilder()
            builder.content(message.body)
            for name, value in (message.headers or {}).items():
                builder.property(name, value)
            if message.key is not None:
                builder.partition_key(message.key)
                builder.ordering_key(message.key)
            receipt: asyncio.Future[Any] = loop.create_future()
            receipt.add_done_callback(lambda _: self._room.release())
            receipts.append(receipt)
            self._raw.send_async(builder.build(), _callback(receipt, value_given=False))
        outcomes = await asyncio.gather(*receipts, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._producer.close(), 5)
        except Exception as exc:
            log.debug("pulsar producer close: %r", exc)


class PulsarDelivery(Delivery):
    __slots__ = ("_message", "_subscription")

    def __init__(self, subscription: PulsarSubscription, message: Any) -> None:
        published = message.publish_timestamp()
        super().__init__(
            message.data(),
            key=message.partition_key() or None,
            headers=dict(message.properties()),
            id=str(message.message_id()),
            delivery_count=message.redelivery_count() + 1,
            timestamp=datetime.fromtimestamp(published / 1000, UTC) if published else None,
        )
        self._subscription = subscription
        self._message = message

    async def ack(self) -> None:
        await self._subscription.ack(self._message)

    async def nack(self, delay: float) -> None:
        self._subscription.nack(self._message, delay)


class PulsarSubscription(Subscription):
    """One consumer. Receives are requested from the client ahead of ``fetch`` (never more
    than the core asked for) and land in a small buffer, so a fetch that times out never
    strands a message in a callback nobody waits for."""

    def __init__(self, consumer: pulsar_asyncio.Consumer, spec: SubscribeSpec,
                 forget: Callable[[PulsarSubscription], None]) -> None:
        self._consumer = consumer
        self._raw: Any = consumer._consumer
        self._spec = spec
        self._forget = forget
        self._loop = asyncio.get_running_loop()
        self._buffer: deque[Any] = deque()
        self._requested = 0
        self._arrived = asyncio.Event()
        self._error: str | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._closed = False

    # -- receiving ---------------------------------------------------------------------------

    def _on_receive(self, result: Any, message: Any) -> None:  # a client thread
        self._loop.call_soon_threadsafe(self._received, result, message)

    def _received(self, result: Any, message: Any) -> None:
        self._requested -= 1
        if result == Result.Ok:
            self._buffer.append(message)
        elif not self._closed:
            self._error = result.name
        self._arrived.set()

    async def fetch(self, max_messages: int, timeout: float) -> Sequence[Delivery]:
        if self._closed:
            raise BusClosed("subscription is closed")
        missing = max_messages - len(self._buffer) - self._requested
        for _ in range(max(0, missing)):
            self._requested += 1
            self._raw.receive_async(self._on_receive)
        if not self._buffer:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout)
        if self._error and not self._buffer:
            error, self._error = self._error, None
            raise BrokerUnavailable(f"receiving from {self._spec.topic!r} failed: {error}")
        taken: list[Delivery] = []
        while self._buffer and len(taken) < max_messages:
            taken.append(PulsarDelivery(self, self._buffer.popleft()))
        return taken

    # -- settling ----------------------------------------------------------------------------

    async def ack(self, message: Any) -> None:
        if self._closed:
            raise BusClosed("subscription is closed; the broker will redeliver")
        done: asyncio.Future[Any] = self._loop.create_future()
        self._raw.acknowledge_async(message, _callback(done, value_given=False))
        try:
            await done
        except pulsar_asyncio.PulsarException as exc:
            raise BrokerUnavailable(f"ack failed ({exc.error().name})") from None

    def nack(self, message: Any, delay: float) -> None:
        """Give back: the consumer's short negative-ack delay, after ``delay`` if any."""
        if self._closed:
            return  # closing the consumer gives back everything unacknowledged
        if delay <= 0:
            self._negative_acknowledge(message)
            return
        handle: asyncio.TimerHandle

        def later() -> None:
            self._timers.discard(handle)
            if not self._closed:
                self._negative_acknowledge(message)

        handle = self._loop.call_later(delay, later)
        self._timers.add(handle)

    def _negative_acknowledge(self, message: Any) -> None:
        # Only records the id in the client's tracker (a mutex, no I/O).
        try:
            self._raw.negative_acknowledge(message)
        except Exception as exc:
            log.debug("pulsar negative_acknowledge: %r", exc)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._forget(self)
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self._buffer.clear()
        try:
            await asyncio.wait_for(self._consumer.close(), 10)
        except Exception as exc:
            log.debug("pulsar consumer close: %r", exc)
