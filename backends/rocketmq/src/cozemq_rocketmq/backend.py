"""RocketMQ 5 through its gRPC proxy, with rocketmq-python-client (Producer, SimpleConsumer).

- A topic is MIXED where the broker allows it (enableMixedMessageType), so a keyed send goes
  as a FIFO message whose message group is the sharding key, and a keyless send as NORMAL.
  On a FIFO-only topic a keyless message gets a one-off message group; on a NORMAL-only topic
  a key travels only as a property (no order by key there).
- A cozemq group is a RocketMQ consumer group; each member is a SimpleConsumer. An orderly
  group is a FIFO group (consumeMessageOrderly): the broker hands out a message group's next
  message only after the previous one is acknowledged, across all members.
- Settling: ack; give-back (nack) and extend change the invisible duration. The proxy's
  minimum invisible time (10 s by default) is why the core retries in place here
  (delayed_redelivery=False) rather than asking the broker for a short delay.
- The client runs gRPC on its own thread; its futures are awaited with asyncio.wrap_future
  and its blocking calls run in a small thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from cozemq.backend import Backend, Capabilities, Delivery, SubscribeSpec, Subscription
from cozemq.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigurationError,
    EventBusError,
    InvalidArgument,
    MessageTooLarge,
)
from cozemq.message import OutgoingMessage
from cozemq.once import Once
from cozemq.settings import Settings, load_settings, masked

from .admin import RocketMQAdmin
from .connection import Endpoints, resolve_endpoints
from .settings import RocketMQSettings

log = logging.getLogger("cozemq.rmq")

T = TypeVar("T")

KEY_PROPERTY = "cozemq-key"
"""The sharding key, also where no message group carries it (NORMAL-only topics)."""
EMPTY_PROPERTY = "cozemq-empty"
"""RocketMQ refuses empty bodies: an empty body travels as one byte with this property."""
NO_KEY_GROUP = "cozemq-nokey-"
"""Message-group prefix for keyless messages on FIFO-only topics."""
EMPTY_HEADERS_PROPERTY = "cozemq-empty-headers"
"""The broker drops properties with empty values: their names travel here, space-separated."""
HIDDEN_PROPERTIES = frozenset({KEY_PROPERTY, EMPTY_PROPERTY, EMPTY_HEADERS_PROPERTY,
                               "__SHARDINGKEY"})

MAX_BODY = 4 * 1024 * 1024
"""RocketMQ's default maxMessageSize (broker and proxy), checked here before sending."""
MAX_TOPIC_LENGTH = 127
MAX_GROUP_LENGTH = 255
MAX_RECEIVE_BATCH = 32
MAX_MESSAGE_GROUP = 64
NAME_CHARS = frozenset("%abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

# rocketmq.grpc_protocol MessageType values.
NORMAL, FIFO = 1, 2
# rocketmq.grpc_protocol Code values the backend acts on.
CODE_OK, TOPIC_NOT_FOUND, UNAUTHORIZED, FORBIDDEN = 20000, 40402, 40100, 40300
INTERNAL_ERROR = 50001


def _client() -> Any:
    import rocketmq

    return rocketmq


@dataclass(frozen=True)
class TopicInfo:
    name: str
    accepts: frozenset[int]

    @property
    def fifo(self) -> bool:
        return FIFO in self.accepts

    @property
    def normal(self) -> bool:
        return NORMAL in self.accepts


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else None


def translate(exc: BaseException, what: str) -> EventBusError:
    """A client exception as a cozemq error (BrokerUnavailable where a retry can help)."""
    if isinstance(exc, EventBusError):
        return exc
    name = type(exc).__name__
    text = str(exc) or name
    code = _code(exc)
    if name == "PayloadTooLargeException" or "exceeds the threshold" in text:
        return MessageTooLarge(f"RocketMQ refused {what}: {text}")
    if name in ("UnauthorizedException", "ForbiddenException") or code in (UNAUTHORIZED,
                                                                             FORBIDDEN):
        return BrokerError(f"RocketMQ refused {what}: {text} (check RMQ_ACCESS_KEY/"
                           "RMQ_SECRET_KEY and the user's ACL)")
    if name in ("BadRequestException", "IllegalArgumentException", "NotFoundException",
                "UnsupportedException", "PayloadEmptyException",
                "RequestHeaderFieldsTooLargeException"):
        return BrokerError(f"RocketMQ refused {what}: {text}")
    return BrokerUnavailable(f"RocketMQ {what} failed: {name}: {text}")


def message_group(key: str) -> str:
    """The FIFO message group of a sharding key; long keys are hashed (the proxy allows 64)."""
    if len(key) <= MAX_MESSAGE_GROUP:
        return key
    return "cozemq-h-" + hashlib.sha256(key.encode()).hexdigest()[:40]


class RocketMQDelivery(Delivery):
    __slots__ = ("_lock", "_message", "_sub")

    def __init__(self, sub: RocketMQSubscription, message: Any) -> None:
        properties = dict(message.properties or {})
        empty = properties.get(EMPTY_PROPERTY) == "1"
        key = properties.get(KEY_PROPERTY)
        group = message.message_group
        if key is None and group and not group.startswith(("cozemq-", NO_KEY_GROUP)):
            key = group  # a foreign FIFO producer's message group is its key
        headers = {k: v for k, v in properties.items() if k not in HIDDEN_PROPERTIES}
        for name in properties.get(EMPTY_HEADERS_PROPERTY, "").split():
            headers[name] = ""
        born = message.born_timestamp
        super().__init__(
            b"" if empty else bytes(message.body or b""),
            key=key,
            headers=headers,
            id=str(message.message_id),
            delivery_count=int(message.delivery_attempt or 1),
            timestamp=datetime.fromtimestamp(born / 1000, UTC) if born else None,
        )
        self._sub = sub
        self._message = message
        # change_invisible_duration replaces the receipt handle: one settle at a time.
        self._lock = asyncio.Lock()

    async def ack(self) -> None:
        async with self._lock:
            await self._sub.call(self._sub.consumer.ack, self._message, what="ack")

    async def nack(self, delay: float) -> None:
        seconds = max(self._sub.min_invisible, math.ceil(delay))
        async with self._lock:
            await self._sub.call(self._sub.consumer.change_invisible_duration, self._message,
                                 seconds, what="give back")

    async def extend(self) -> None:
        async with self._lock:
            await self._sub.call(self._sub.consumer.change_invisible_duration, self._message,
                                 self._sub.invisible, what="extend")


class RocketMQSubscription(Subscription):
    def __init__(self, backend: RocketMQBackend, consumer: Any, spec: SubscribeSpec) -> None:
        self.backend = backend
        self.consumer = consumer
        self.spec = spec
        own = backend.rmq_settings
        self.invisible = own.invisible_duration
        self.min_invisible = own.min_invisible_duration
        self._closed = False
        self._settings_sent = 0.0

    async def call(self, fn: Callable[..., T], *args: Any, what: str) -> T:
        try:
            return await self.backend.run(fn, *args)
        except Exception as exc:
            raise translate(exc, f"{what} on {self.spec.topic}/{self.spec.group}") from None

    async def fetch(self, max_messages: int, timeout: float) -> Sequence[Delivery]:
        if self._closed:
            return ()
        future: Future[Any] = self.consumer.receive_async(
            min(max_messages, MAX_RECEIVE_BATCH), self.invisible
        )
        try:
            messages = await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            # The receive goes on in the client: whatever it brings is given back at once.
            future.add_done_callback(self._give_back_late)
            raise
        except Exception as exc:
            if _code(exc) == INTERNAL_ERROR and "settings" in str(exc):
                await self._resend_settings()
            raise translate(exc, f"receive on {self.spec.topic}/{self.spec.group}") from None
        return [RocketMQDelivery(self, m) for m in messages or ()]

    async def _resend_settings(self) -> None:
        """A restarted proxy has forgotten this consumer's settings (50001 "settings is
        null") and the client resends them only every 5 minutes: reopen the telemetry
        stream, which sends them again."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._settings_sent < 2.0:
            return
        self._settings_sent = loop.time()
        endpoints = list(self.consumer.route_manager.get_all_endpoints().values())
        for each in endpoints:
            try:
                await self.backend.run(self.consumer.on_new_endpoints, each)
            except Exception as exc:
                log.debug("rmq: resending consumer settings failed: %r", exc)
        log.info("rmq: %s/%s: the proxy lost this consumer's settings; sent them again",
                 self.spec.topic, self.spec.group)

    def _give_back_late(self, future: Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        for message in future.result() or ():
            try:
                self.consumer.change_invisible_duration(message, self.min_invisible)
            except Exception as exc:  # it comes back after its invisible duration anyway
                log.debug("rmq: giving back a late message failed: %r", exc)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.backend.run(self.consumer.shutdown)
        except Exception as exc:
            log.debug("rmq: consumer shutdown: %r", exc)


class RocketMQBackend(Backend):
    name = "rmq"
    capabilities = Capabilities(
        persistent=True,
        redelivery=True,
        replays_to_new_groups=False,
        consumer_groups=True,
        ordering_by_key=True,
        native_headers=True,
        delayed_redelivery=False,
        deduplication=False,
        ack_deadline=True,
        max_message_size=MAX_BODY,
    )
    dead_letter_suffix = "_dlq"

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        super().__init__(settings, env)
        self.rmq_settings = own = load_settings(RocketMQSettings, env)
        self.endpoints: Endpoints = resolve_endpoints(own, settings.name_server)
        if (own.access_key is None and own.secret_key is not None) or (
            own.access_key is not None and own.secret_key is None
        ):
            raise ConfigurationError("set both RMQ_ACCESS_KEY and RMQ_SECRET_KEY, or neither")
        if own.auto_create_topics and not self.endpoints.namesrv:
            raise ConfigurationError(
                "RMQ_AUTO_CREATE_TOPICS=true needs the name server: set RMQ_NAMESRV_ADDR "
                "(e.g. 127.0.0.1:9876)"
            )
        self.ack_extend_interval = max(0.5, own.invisible_duration / 3)  # type: ignore[misc]
        self._executor: ThreadPoolExecutor | None = None
        self._producer: Any = None
        self._config: Any = None
        self.ensure_topic: Once[str, TopicInfo] = Once(self._ensure_topic)
        """The topic's accepted message types: looked up (or created) once per process."""
        self._groups: Once[tuple[str, bool], None] = Once(self._create_group)
        self._admin: RocketMQAdmin | None = None
        self._subscriptions: set[RocketMQSubscription] = set()

    # -- plumbing -----------------------------------------------------------------------------

    def describe(self) -> str:
        namesrv = f" namesrv {self.endpoints.namesrv}" if self.endpoints.namesrv else ""
        return f"rmq proxy {self.endpoints.proxy}{namesrv}"

    def shown_settings(self) -> dict[str, str]:
        return masked(self.rmq_settings)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking client call, in the backend's thread pool."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="cozemq-rmq")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    @property
    def admin(self) -> RocketMQAdmin:
        if self._admin is None:
            own = self.rmq_settings
            self._admin = RocketMQAdmin(
                self.endpoints.namesrv,
                access_key=own.access_key.get_secret_value() if own.access_key else None,
                secret_key=own.secret_key.get_secret_value() if own.secret_key else None,
                cluster=own.cluster,
                timeout=self.settings.connect_timeout,
            )
        return self._admin

    def _client_config(self) -> Any:
        rmq = _client()
        own = self.rmq_settings
        credentials = rmq.Credentials(
            own.access_key.get_secret_value() if own.access_key else "",
            own.secret_key.get_secret_value() if own.secret_key else "",
        )
        return rmq.ClientConfiguration(self.endpoints.proxy, credentials,
                                       namespace=own.namespace,
                                       request_timeout=own.request_timeout)

    # -- connection ---------------------------------------------------------------------------

    async def connect(self) -> None:
        self._config = self._client_config()
        producer = _client().Producer(self._config, tls_enable=self.rmq_settings.tls)
        try:
            await self.run(producer.startup)
        except Exception as exc:
            raise BrokerUnavailable(f"RocketMQ producer did not start: {exc!r}") from None
        self._producer = producer
        try:
            await self.ping()
        except BaseException:
            await self.close()
            raise

    def _unreachable(self, detail: str) -> BrokerUnavailable:
        hint = ""
        if self.endpoints.mapped_from:
            hint = (f"; MQ_NAME_SERVER={self.endpoints.mapped_from} names a name server, so "
                    f"the proxy was assumed at {self.endpoints.proxy}: set RMQ_PROXY_ENDPOINT "
                    "to the proxy's gRPC endpoint")
        return BrokerUnavailable(
            f"the RocketMQ proxy at {self.endpoints.proxy} did not answer within "
            f"{self.settings.connect_timeout:g}s (COZEMQ_CONNECT_TIMEOUT): {detail}{hint}"
        )

    async def _query_route(self, topic: str) -> Any:
        """One gRPC QueryRoute through the producer's channel; returns the response."""
        from rocketmq.grpc_protocol import QueryRouteRequest

        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("RocketMQ backend is not connected")
        request = QueryRouteRequest()
        request.topic.name = topic
        request.topic.resource_namespace = self.rmq_settings.namespace
        request.endpoints.CopyFrom(self._config.rpc_endpoints.endpoints)
        future = producer.rpc_client.query_topic_route_async(
            self._config.rpc_endpoints, request, metadata=producer.sign(),
            timeout=self.settings.connect_timeout,
        )
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future),
                                          self.settings.connect_timeout + 1)
        except Exception as exc:
            raise self._unreachable(f"{type(exc).__name__}: {exc}") from None

    async def ping(self) -> None:
        response = await self._query_route("TBW102")
        code = int(response.status.code)
        if code in (UNAUTHORIZED,):
            raise BrokerError(
                f"RocketMQ refused the credentials: {response.status.message} (check "
                "RMQ_ACCESS_KEY/RMQ_SECRET_KEY)"
            )

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await self.run(producer.shutdown)
            except Exception as exc:
                log.debug("rmq: producer shutdown: %r", exc)
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    # -- topics and groups --------------------------------------------------------------------

    async def _ensure_topic(self, topic: str) -> TopicInfo:
        if self.rmq_settings.auto_create_topics and not await self.admin.topic_exists(topic):
            # Before any route query: the proxy caches "no route" for a while.
            await self._create_topic(topic)
        response = await self._query_route(topic)
        code = int(response.status.code)
        if code == TOPIC_NOT_FOUND:
            if not self.rmq_settings.auto_create_topics:
                raise BrokerError(
                    f"RocketMQ topic {topic!r} does not exist: create it with "
                    f"`cozemq topic create {topic}` (or mqadmin updateTopic -t {topic} "
                    "-a +message.type=MIXED), or set RMQ_AUTO_CREATE_TOPICS=true"
                )
            await self._create_topic(topic)
            response = await self._wait_for_route(topic)
            code = int(response.status.code)
        if code in (UNAUTHORIZED, FORBIDDEN):
            raise BrokerError(f"RocketMQ refused access to topic {topic!r}: "
                              f"{response.status.message} (check RMQ_ACCESS_KEY/RMQ_SECRET_KEY "
                              "and the user's ACL)")
        if code != CODE_OK:
            raise BrokerUnavailable(f"RocketMQ route query for {topic!r} answered {code}: "
                                    f"{response.status.message}")
        accepts = frozenset(int(t) for q in response.message_queues
                            for t in q.accept_message_types)
        # Prime the client's route cache off the loop (it blocks on a cold lookup).
        await self.run(self._producer._retrieve_topic_route_data, topic)
        return TopicInfo(topic, accepts or frozenset({NORMAL}))

    async def create_topic(self, topic: str, *, orderly: bool = False) -> None:
        """`cozemq topic create`: a MIXED topic takes keyed (FIFO) and keyless sends alike."""
        if not self.endpoints.namesrv:
            raise ConfigurationError(
                "creating a RocketMQ topic needs the name server: set RMQ_NAMESRV_ADDR "
                "(e.g. 127.0.0.1:9876)"
            )
        await self._create_topic(topic)
        self.ensure_topic.forget(topic)

    async def _create_topic(self, topic: str) -> None:
        queues = self.rmq_settings.topic_queues
        try:
            await self.admin.create_topic(topic, queues=queues)
        except BrokerError as exc:
            if "MIXED" not in str(exc):
                raise
            # The broker has enableMixedMessageType=false: FIFO topics take keyless messages
            # with a one-off message group, so both kinds of send still work.
            log.info("rmq: broker refuses MIXED topics, creating %r as FIFO", topic)
            await self.admin.create_topic(topic, fifo=True, queues=queues)
        log.info("rmq: created topic %r", topic)

    async def _wait_for_route(self, topic: str) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(10.0, self.settings.connect_timeout)
        pause = 0.05
        while True:
            response = await self._query_route(topic)
            if int(response.status.code) != TOPIC_NOT_FOUND or loop.time() > deadline:
                return response
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)

    async def ensure_group(self, group: str, orderly: bool) -> None:
        await self._groups((group, orderly))

    async def _create_group(self, key: tuple[str, bool]) -> None:
        group, orderly = key
        await self.admin.create_group(group, orderly=orderly)

    # -- names and sizes ----------------------------------------------------------------------

    def validate_name(self, kind: str, name: str) -> None:
        limit = MAX_GROUP_LENGTH if kind == "group" else MAX_TOPIC_LENGTH
        if not name or not NAME_CHARS.issuperset(name) or len(name) > limit:
            raise InvalidArgument(
                f"{kind} {name!r}: RocketMQ names use only letters, digits, '%', '_' and '-' "
                f"(no '.'), at most {limit} characters"
            )

    def message_size(self, message: OutgoingMessage) -> int:
        return len(message.body)

    # -- publishing ---------------------------------------------------------------------------

    def _to_client_message(self, topic: str, info: TopicInfo, message: OutgoingMessage) -> Any:
        rmq = _client()
        out = rmq.Message()
        out.topic = topic
        out.body = message.body or b"\x00"
        # Straight into the property map: add_property() refuses empty values.
        properties = out.properties
        headers = message.headers or {}
        properties.update({k: v for k, v in headers.items() if v})
        empty_values = [k for k, v in headers.items() if not v]
        if empty_values:
            properties[EMPTY_HEADERS_PROPERTY] = " ".join(empty_values)
        if not message.body:
            properties[EMPTY_PROPERTY] = "1"
        if message.key is not None:
            properties[KEY_PROPERTY] = message.key
            if message.key.strip():
                out.keys = message.key
            if info.fifo and message.key:
                out.message_group = message_group(message.key)
        elif info.fifo and not info.normal:
            out.message_group = NO_KEY_GROUP + uuid.uuid4().hex
        return out

    async def _send(self, topic: str, info: TopicInfo, message: OutgoingMessage) -> None:
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("RocketMQ backend is not connected")
        out = self._to_client_message(topic, info, message)
        try:
            future = producer.send_async(out)
            await asyncio.wrap_future(future)
        except Exception as exc:
            error = translate(exc, f"send to {topic!r}")
            if _code(exc) == TOPIC_NOT_FOUND:
                self.ensure_topic.forget(topic)
            raise error from None

    async def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        info = self.ensure_topic.done.get(topic)
        if info is None:  # looked up once; every later send skips the await
            info = await self.ensure_topic(topic)
        if len(messages) == 1:
            await self._send(topic, info, messages[0])
            return
        # Concurrent sends; messages sharing a key go one after another so they keep order.
        chains: dict[str | None, list[OutgoingMessage]] = {}
        keyless: list[OutgoingMessage] = []
        for message in messages:
            if message.key is None:
                keyless.append(message)
            else:
                chains.setdefault(message.key, []).append(message)

        async def chain(items: list[OutgoingMessage]) -> None:
            for item in items:
                await self._send(topic, info, item)

        results = await asyncio.gather(
            *(chain(items) for items in chains.values()),
            *(self._send(topic, info, m) for m in keyless),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # -- consuming ----------------------------------------------------------------------------

    async def subscribe(self, spec: SubscribeSpec) -> Subscription:
        await self.ensure_topic(spec.topic)
        if self.rmq_settings.auto_create_topics:
            await self.ensure_group(spec.group, spec.orderly)
        rmq = _client()
        consumer = rmq.SimpleConsumer(
            self._config, spec.group, {spec.topic: rmq.FilterExpression("*")},
            await_duration=self.rmq_settings.poll_wait, tls_enable=self.rmq_settings.tls,
        )
        try:
            await self.run(consumer.startup)
            # The first receive before the server's settings arrive fails with 50001.
            event = consumer._init_settings_event
            if event is not None and not await self.run(event.wait, 10):
                log.warning("rmq: no settings from the proxy for %s/%s within 10s",
                            spec.topic, spec.group)
        except Exception as exc:
            raise translate(exc, f"subscribe {spec.topic}/{spec.group}") from None
        return RocketMQSubscription(self, consumer, spec)
