"""Core NATS: a queue group per consumer group. At most once: nothing is stored, so a message
sent while no member of a group is subscribed, or in flight when a member dies, is lost.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from cozemq.backend import Capabilities, Delivery, SubscribeSpec, Subscription, take_batch
from cozemq.errors import BrokerUnavailable, MessageTooLarge
from cozemq.message import OutgoingMessage

from .base import TRANSIENT, NatsBackendBase, header_block, split_headers

# nats-py buffers this many messages per subscription before it counts a slow consumer
# and drops: the bound on client memory when handlers fall behind.
PENDING_LIMIT = 10_000


class CoreDelivery(Delivery):
    __slots__ = ()

    async def ack(self) -> None:
        return None

    async def nack(self, delay: float) -> None:
        return None  # core NATS cannot give a message back: at most once


class CoreSubscription(Subscription):
    def __init__(self, prefetch: int) -> None:
        self.queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=max(prefetch, 1))
        self.sub: NatsSubscription | None = None
        self._ids = itertools.count(1)

    async def on_message(self, msg: Msg) -> None:
        await self.queue.put(msg)  # backpressure into nats-py's bounded pending buffer

    async def fetch(self, max_messages: int, timeout: float) -> Sequence[Delivery]:
        return [self._delivery(m) for m in await take_batch(self.queue, max_messages, timeout)]

    def _delivery(self, msg: Msg) -> Delivery:
        key, headers = split_headers(msg.headers)
        return CoreDelivery(msg.data, key=key, headers=headers,
                            id=f"{id(self):x}-{next(self._ids)}", delivery_count=1,
                            timestamp=datetime.now(UTC))

    async def close(self) -> None:
        if self.sub is not None:
            try:
                await self.sub.unsubscribe()
            except (nats.errors.Error, *TRANSIENT):
                pass


class NatsCoreBackend(NatsBackendBase):
    mode = "core"
    capabilities = Capabilities(
        redelivery=False,
        persistent=False,
        replays_to_new_groups=False,
        consumer_groups=True,
        ordering_by_key=False,
        native_headers=True,
        delayed_redelivery=False,
        deduplication=False,
        ack_deadline=False,
        max_message_size=1024 * 1024,
    )

    async def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        nc = self.connection
        try:
            for message in messages:
                await nc.publish(topic, message.body, headers=header_block(message))
        except nats.errors.MaxPayloadError as exc:
            raise MessageTooLarge(f"NATS refused the message: {exc}") from None
        except TRANSIENT as exc:
            raise BrokerUnavailable(f"NATS publish to {topic!r} failed: {exc!r}") from None

    async def subscribe(self, spec: SubscribeSpec) -> Subscription:
        subscription = CoreSubscription(spec.prefetch)
        subscription.sub = await self.connection.subscribe(
            spec.topic, queue=spec.group, cb=subscription.on_message,
            pending_msgs_limit=PENDING_LIMIT,
        )
        # register_consumer returns once subscribed: the server must know the interest
        # before a send from another connection, or that send has no receiver.
        await self.connection.flush(timeout=self.settings.connect_timeout)  # type: ignore[arg-type]
        return subscription
