"""COZE_MQ_TYPE=memory: an in-process broker for users' unit tests and single-process apps.

It keeps the same semantics as the real brokers (groups share work, each group gets every
message, nack with delay, order per key for orderly groups, deduplication by idempotency key,
a size limit) so code tested against it behaves the same on NATS or Kafka. Buses in one
process that use the same MQ_NAME_SERVER (any label; default "default") share one broker.
Nothing survives the process: it is not persistent.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import Field
from pydantic_settings import BaseSettings

from .backend import Backend, Capabilities, Delivery, SubscribeSpec, Subscription
from .errors import BusClosed, InvalidArgument
from .message import OutgoingMessage
from .settings import Settings, load_settings, masked, settings_config

DEDUP_WINDOW = 120.0


class MemorySettings(BaseSettings):
    model_config = settings_config()

    max_message_size: int = Field(default=1024 * 1024, ge=1,
                                  alias="COZEMQ_MEMORY_MAX_MESSAGE_SIZE")
    retain: int = Field(default=10_000, ge=0, alias="COZEMQ_MEMORY_RETAIN")


@dataclass(slots=True)
class _Record:
    offset: int
    body: bytes
    key: str | None
    headers: Mapping[str, str]
    timestamp: datetime


@dataclass
class _Group:
    ready: list[tuple[int, _Record]] = field(default_factory=list)
    deliveries: dict[int, int] = field(default_factory=dict)
    locked_keys: set[str | None] = field(default_factory=set)
    orderly: bool = False
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def push(self, record: _Record) -> None:
        heapq.heappush(self.ready, (record.offset, record))
        self._wake()

    def _wake(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()

    def take(self, limit: int) -> list[_Record]:
        taken: list[_Record] = []
        blocked: list[tuple[int, _Record]] = []
        while self.ready and len(taken) < limit:
            item = heapq.heappop(self.ready)
            record = item[1]
            if self.orderly:
                if record.key in self.locked_keys:
                    blocked.append(item)
                    continue
                self.locked_keys.add(record.key)
            taken.append(record)
        for item in blocked:
            heapq.heappush(self.ready, item)
        return taken

    def settle(self, record: _Record) -> None:
        self.deliveries.pop(record.offset, None)
        self.unlock(record)

    def unlock(self, record: _Record) -> None:
        if self.orderly and record.key in self.locked_keys:
            self.locked_keys.discard(record.key)
            if self.ready:
                self._wake()


@dataclass
class _Topic:
    log: deque[_Record]
    groups: dict[str, _Group] = field(default_factory=dict)
    seen_keys: dict[str, float] = field(default_factory=dict)


class MemoryBroker:
    """The broker itself: topics, their retained log, and each group's queue."""

    _instances: ClassVar[dict[str, MemoryBroker]] = {}

    def __init__(self, retain: int) -> None:
        self.retain = retain
        self.topics: dict[str, _Topic] = {}
        self._offsets = itertools.count(1)

    @classmethod
    def named(cls, name: str, retain: int) -> MemoryBroker:
        broker = cls._instances.get(name)
        if broker is None:
            broker = cls._instances[name] = cls(retain)
        return broker

    @classmethod
    def reset(cls) -> None:
        """Forget every in-process broker (for test isolation)."""
        cls._instances.clear()

    def topic(self, name: str) -> _Topic:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = _Topic(log=deque(maxlen=self.retain or None))
        return topic

    def publish(self, topic_name: str, messages: Sequence[OutgoingMessage]) -> None:
        topic = self.topic(topic_name)
        now = time.monotonic()
        for message in messages:
            if message.idempotency_key is not None:
                seen = topic.seen_keys.get(message.idempotency_key)
                if seen is not None and now - seen < DEDUP_WINDOW:
                    continue
                topic.seen_keys[message.idempotency_key] = now
            record = _Record(next(self._offsets), message.body, message.key,
                             dict(message.headers or {}), datetime.now(UTC))
            if self.retain:
                topic.log.append(record)
            for group in topic.groups.values():
                group.push(record)

    def group(self, topic_name: str, name: str, orderly: bool) -> _Group:
        topic = self.topic(topic_name)
        group = topic.groups.get(name)
        if group is None:
            # A new group starts from the oldest retained message, like Kafka's "earliest".
            group = topic.groups[name] = _Group(orderly=orderly)
            for record in topic.log:
                group.push(record)
        return group


class MemoryDelivery(Delivery):
    __slots__ = ("_group", "_record", "_subscription")
    inline_settle = True

    def __init__(self, subscription: MemorySubscription, record: _Record, count: int) -> None:
        super().__init__(record.body, key=record.key, headers=record.headers,
                         id=str(record.offset), delivery_count=count,
                         timestamp=record.timestamp)
        self._subscription = subscription
        self._group = subscription.group
        self._record = record

    async def ack(self) -> None:
        if self._subscription.release(self):
            self._group.settle(self._record)

    async def nack(self, delay: float) -> None:
        if not self._subscription.release(self):
            return
        record, group = self._record, self._group
        if delay <= 0:
            group.push(record)
            group.unlock(record)
        else:
            def requeue() -> None:
                group.push(record)
                group.unlock(record)
            asyncio.get_running_loop().call_later(delay, requeue)


class MemorySubscription(Subscription):
    def __init__(self, group: _Group) -> None:
        self.group = group
        self._held: set[MemoryDelivery] = set()
        self._closed = False

    async def fetch(self, max_messages: int, timeout: float) -> Sequence[Delivery]:
        if self._closed:
            raise BusClosed("subscription is closed")
        records = self.group.take(max_messages)
        if not records:
            waiter = asyncio.get_running_loop().create_future()
            self.group.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                return ()
            records = self.group.take(max_messages)
        out = []
        for record in records:
            count = self.group.deliveries.get(record.offset, 0) + 1
            self.group.deliveries[record.offset] = count
            delivery = MemoryDelivery(self, record, count)
            self._held.add(delivery)
            out.append(delivery)
        return out

    def release(self, delivery: MemoryDelivery) -> bool:
        """True the first time a delivery is settled; a second ack or nack is a no-op."""
        if delivery in self._held:
            self._held.remove(delivery)
            return True
        return False

    async def close(self) -> None:
        self._closed = True
        for delivery in list(self._held):
            await delivery.nack(0)


class MemoryBackend(Backend):
    name = "memory"
    capabilities = Capabilities(
        redelivery=True,
        persistent=False,
        replays_to_new_groups=True,
        consumer_groups=True,
        ordering_by_key=True,
        native_headers=True,
        delayed_redelivery=True,
        deduplication=True,
        ack_deadline=False,
        max_message_size=MemorySettings.model_fields["max_message_size"].default,
    )

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        super().__init__(settings, env)
        own = load_settings(MemorySettings, env)
        self.refine_capabilities(max_message_size=own.max_message_size)
        self.own_settings = own
        self.label = settings.name_server or "default"
        self.broker = MemoryBroker.named(self.label, own.retain)

    def describe(self) -> str:
        return f"memory://{self.label}"

    def shown_settings(self) -> dict[str, str]:
        return masked(self.own_settings)

    async def connect(self) -> None:
        return None

    async def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        self.broker.publish(topic, messages)

    async def subscribe(self, spec: SubscribeSpec) -> Subscription:
        return MemorySubscription(self.broker.group(spec.topic, spec.group, spec.orderly))

    async def close(self) -> None:
        return None

    async def create_topic(self, topic: str, *, orderly: bool = False) -> None:
        self.broker.topic(topic)

    def validate_name(self, kind: str, name: str) -> None:
        if not name.isprintable() or any(c.isspace() for c in name):
            raise InvalidArgument(
                f"{kind} {name!r}: names must be printable and contain no whitespace"
            )

