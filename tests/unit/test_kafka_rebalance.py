"""Order per key holds while members join and leave (partitions move between them)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from cozemq import EventBus
from cozemq.kit import BrokerKit
from cozemq.testing.suite import until
from cozemq.testing.tally import KeyOrderCheck, payload

pytestmark = [pytest.mark.asyncio, pytest.mark.broker("kafka")]

ENV = {"KAFKA_TOPIC_PARTITIONS": "6", "KAFKA_SESSION_TIMEOUT_MS": "6000",
       "KAFKA_HEARTBEAT_INTERVAL_MS": "300", "COZEMQ_CLOSE_TIMEOUT": "5"}


async def test_orderly_members_keep_order_per_key_across_a_rebalance(
    kafka_kit: BrokerKit,
) -> None:
    topic = f"rb{uuid.uuid4().hex[:10]}"
    keys = [f"doc-{k}" for k in range(12)]
    check = KeyOrderCheck(work=0.002)

    def new_bus() -> EventBus:
        return EventBus.from_env({**kafka_kit.env(), **ENV})

    per_key = 60
    async with new_bus() as first, new_bus() as sender:
        await first.register_consumer(topic, "g", check, orderly=True, concurrency=8)

        async def produce() -> None:
            for seq in range(per_key):
                for key in keys:
                    await sender.send_message(topic, payload(key, seq), key=key)
                await asyncio.sleep(0.01)

        producing = asyncio.create_task(produce())
        await until(lambda: check.count() >= 100, what="a first share")
        async with new_bus() as second:  # joins: partitions move to it ...
            await second.register_consumer(topic, "g", check, orderly=True, concurrency=8)
            await until(lambda: check.count() >= 350, what="more")
        # ... and leaves again: they move back.
        await producing
        await until(lambda: all(set(check.handled[k]) >= set(range(per_key)) for k in keys),
                    what="every message")

    assert check.overlaps == [], "two messages of one key were in handlers at once"
    for key in keys:
        firsts = list(dict.fromkeys(check.handled[key]))  # first handling of each, in order
        assert firsts == list(range(per_key)), (key, check.handled[key])
