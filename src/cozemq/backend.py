"""The small surface a backend implements. Semantics (retry, backoff, dead-letter, attempt
counting, ordering, drain) live in the core, above these primitives, written once.

A backend package registers a :class:`Backend` subclass under the entry-point group
``cozemq.backends``; its name is a ``COZE_MQ_TYPE`` value.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import ClassVar, TypeVar

from .errors import NotSupported
from .message import OutgoingMessage
from .settings import Settings


@dataclass(frozen=True)
class Capabilities:
    """What a backend can promise. The conformance suite holds it to each one.

    Anything declared False that a caller asks for raises NotSupported.
    """

    persistent: bool
    """A send that returned survives a broker crash and restart."""
    redelivery: bool
    """A message not acknowledged (failed member, close past its deadline) comes back."""
    replays_to_new_groups: bool
    """A group that registers late still receives messages sent before it existed."""
    consumer_groups: bool
    """Several consumers in one group share the work, each message handled once by the group."""
    ordering_by_key: bool
    """``orderly=True`` is honoured: per sharding key, one message at a time, in send order."""
    native_headers: bool
    """Headers travel in the broker's own header field (else in a cozemq envelope)."""
    delayed_redelivery: bool
    """The broker itself redelivers a nacked message after a delay (else the core waits)."""
    deduplication: bool
    """The broker drops a second send with the same ``idempotency_key``."""
    ack_deadline: bool
    """The broker redelivers a message left unacknowledged too long; the core extends it."""
    max_message_size: int | None
    """Largest body (without key or headers) the broker accepts, in bytes; None if unbounded."""
    attempts_survive_rejoin: bool = True
    """A message given back reaches the group's next member with its attempt count raised
    (False where the broker forgets the count once a group has no member, as Pulsar does)."""


@dataclass(frozen=True)
class SubscribeSpec:
    topic: str
    group: str
    orderly: bool
    prefetch: int
    """How many unacknowledged deliveries this member may hold at once."""


class Delivery(ABC):
    """One message as received, with the broker's settle operations."""

    __slots__ = ("body", "delivery_count", "headers", "id", "key", "timestamp")

    inline_settle: ClassVar[bool] = False
    """ack/nack only queue a frame or update bookkeeping and never wait for the broker, so
    the core may settle from its fetch loop (plain handlers then run there, hand-off free)."""

    def __init__(
        self,
        body: bytes,
        *,
        key: str | None,
        headers: Mapping[str, str],
        id: str,
        delivery_count: int,
        timestamp: datetime | None,
    ) -> None:
        self.body = body
        self.key = key
        self.headers = headers
        self.id = id
        self.delivery_count = delivery_count
        self.timestamp = timestamp

    @abstractmethod
    async def ack(self) -> None:
        """Settle for good: the group never sees this message again."""

    @abstractmethod
    async def nack(self, delay: float) -> None:
        """Give it back for redelivery after ``delay`` seconds (0: as soon as possible)."""

    async def extend(self) -> None:
        """Push the broker's ack deadline back while a handler is still working."""

    def ack_now(self) -> None:
        """ack() without a coroutine, for classes whose ack never waits (may raise)."""
        raise NotImplementedError


T = TypeVar("T")


async def take_batch(queue: asyncio.Queue[T], max_messages: int, timeout: float) -> list[T]:
    """Up to ``max_messages`` items from a push backend's buffer, waiting at most ``timeout``
    for the first. Only an empty buffer waits, with a timer rather than wait_for's task:
    where messages trickle in one at a time, that wait happens once per message."""
    batch: list[T] = []
    if queue.empty():
        try:
            async with asyncio.timeout(timeout):
                batch.append(await queue.get())
        except TimeoutError:
            return batch
    while len(batch) < max_messages and not queue.empty():
        batch.append(queue.get_nowait())
    return batch


class Subscription(ABC):
    """One member of a consumer group."""

    dropped: int = 0
    """Messages the broker's client discarded before cozemq saw them because this member
    fell behind (only where the broker is at most once, e.g. core NATS)."""

    @abstractmethod
    async def fetch(self, max_messages: int, timeout: float) -> Sequence[Delivery]:
        """Up to ``max_messages`` deliveries, waiting at most ``timeout`` for the first."""

    def deliver_directly(self, offer: Callable[[Delivery], bool]) -> None:
        """Push backends whose deliveries have ack_now(): call ``offer`` from the client's
        message callback, and buffer for fetch() only what it declines (busy, closing).
        That saves a wake-up of the fetch loop per message. Pull backends ignore it."""

    @abstractmethod
    async def close(self) -> None:
        """Stop receiving. Deliveries not yet acked come back to the group."""


class Backend(ABC):
    """A broker, translated. One instance per EventBus."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    dead_letter_suffix: ClassVar[str] = ".dlq"
    """Default dead-letter topic is ``<topic><suffix>`` unless COZEMQ_DEAD_LETTER_SUFFIX is set."""
    ack_extend_interval: ClassVar[float | None] = None
    """How often the core calls Delivery.extend() while a handler runs (None: never)."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings

    def refine_capabilities(self, **changes: object) -> None:
        """Record what this instance's configuration (or the connected broker) changes of the
        class's declaration, e.g. a size limit; the class attribute stays the default."""
        self.capabilities = replace(self.capabilities, **changes)  # type: ignore[misc,arg-type]

    @abstractmethod
    async def connect(self) -> None:
        """Reach the broker within settings.connect_timeout or raise BrokerUnavailable."""

    @abstractmethod
    async def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        """Send in order; return once the broker has accepted every one (or raise)."""

    async def publish_one(self, topic: str, message: OutgoingMessage) -> None:
        await self.publish(topic, (message,))

    @abstractmethod
    async def subscribe(self, spec: SubscribeSpec) -> Subscription: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def create_topic(self, topic: str, *, orderly: bool = False) -> None:
        """Create ``topic`` ahead of use (idempotent). Brokers that create topics on first use
        may do it here too; ``orderly`` asks for a topic that keeps order per key."""
        raise NotSupported(f"the {self.name} backend cannot create topics from cozemq")

    async def ping(self) -> None:
        """A cheap round trip to the broker, for `cozemq doctor`."""

    def validate_name(self, kind: str, name: str) -> None:
        """Raise InvalidArgument if ``name`` is not a valid topic or group for this broker."""

    def message_size(self, message: OutgoingMessage) -> int:
        """Bytes the broker counts against its limit; compared with max_message_size."""
        return len(message.body)

    def describe(self) -> str:
        """Where this backend points, for logs and `cozemq doctor`; no secrets."""
        return self.name

    def shown_settings(self) -> dict[str, str]:
        """The backend's own settings by variable name, secrets masked (`cozemq doctor`)."""
        return {}
