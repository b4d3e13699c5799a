"""Core NATS: a queue group per consumer group. At most once: nothing is stored, so a message
sent while no member of a group is subscribed, or in flight when a member dies, is lost.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from cozemq.backend import Capabilities, Delivery, SubscribeSpec, Subscription, take_batch
from cozemq.errors import BrokerUnavailable, ConfigurationError, MessageTooLarge
from cozemq.message import OutgoingMessage
from cozemq.settings import Settings

from .base import TRANSIENT, NatsBackendBase, header_block, split_headers

log = logging.getLogger("cozemq.nats")


class CoreDelivery(Delivery):
    __slots__ = ()
    inline_settle = True  # nothing to settle: at most once

    async def ack(self) -> None:
        return None

    async def nack(self, delay: float) -> None:
        return None  # core NATS cannot give a message back: at most once


class CoreSubscription(Subscription):
    """Reads nats-py's own buffer of a callback-less subscription: a second queue and a
    callback task in between would cost more per message than the rest of the path."""

    def __init__(self, sub: NatsSubscription, describe: str,
                 members: dict[NatsSubscription, CoreSubscription]) -> None:
        self.sub = sub
        self.describe = describe
        self.members = members  # the backend's, to route slow-consumer errors here
        self.pending: asyncio.Queue[Msg] = sub._pending_queue
        self.dropped = 0
        self._ids = itertools.count(1)

    async def fetch(self, max_messages: int, timeout: float) -> Sequence[Delivery]:
        msgs = await take_batch(self.pending, max_messages, timeout)
        sub, pending, ids = self.sub, self.pending, self._ids
        prefix = f"{id(self):x}-"
        now = datetime.now(UTC)
        deliveries: list[Delivery] = []
        for msg in msgs:
            # The bookkeeping nats-py's next_msg() does for each message it hands out.
            sub._pending_size -= len(msg.data)
            pending.task_done()
            key, headers = split_headers(msg.headers)
            deliveries.append(CoreDelivery(msg.data, key=key, headers=headers,
                                           id=prefix + str(next(ids)), delivery_count=1,
                                           timestamp=now))
        return deliveries

    def count_drop(self) -> None:
        """nats-py discarded a message because this member fell behind (slow consumer)."""
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 10_000 == 0:
            log.warning("%s: the consumer fell behind; the NATS client dropped %d message(s) "
                        "(core NATS is at most once: raise NATS_PENDING_MESSAGES / "
                        "NATS_PENDING_BYTES, or use JetStream)", self.describe, self.dropped)

    async def close(self) -> None:
        self.members.pop(self.sub, None)
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

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        super().__init__(settings, env)
        # Which member a slow-consumer error from nats-py is about.
        self._members: dict[NatsSubscription, CoreSubscription] = {}

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
        own = self.nats_settings
        sub = await self.connection.subscribe(
            spec.topic, queue=spec.group,
            pending_msgs_limit=own.pending_messages, pending_bytes_limit=own.pending_bytes,
        )
        if not isinstance(getattr(sub, "_pending_queue", None), asyncio.Queue):
            await sub.unsubscribe()
            raise ConfigurationError(
                "this nats-py version keeps no per-subscription queue cozemq can read; "
                "install the nats-py version cozemq-nats requires"
            )
        subscription = CoreSubscription(sub, f"{spec.topic}/{spec.group}", self._members)
        self._members[sub] = subscription
        # register_consumer returns once subscribed: the server must know the interest
        # before a send from another connection, or that send has no receiver.
        await self.connection.flush(timeout=self.settings.connect_timeout)  # type: ignore[arg-type]
        return subscription

    async def on_slow_consumer(self, exc: nats.errors.SlowConsumerError) -> None:
        member = self._members.get(exc.sub)
        if member is not None:
            member.count_drop()
