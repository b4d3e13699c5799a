"""Core NATS is at most once: a consumer that falls behind loses messages in the client.
cozemq must not lose them silently: they are counted, and a warning names the consumer."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cozemq import EventBus, Message
from cozemq.kit import BrokerKit
from cozemq.testing.suite import until


async def test_messages_dropped_by_a_slow_core_consumer_are_counted_and_logged(
    nats_kit: BrokerKit, caplog: pytest.LogCaptureFixture
) -> None:
    env = {**nats_kit.env(), "NATS_USE_JETSTREAM": "false", "NATS_PENDING_MESSAGES": "20"}
    release = asyncio.Event()

    async def stuck(message: Message) -> None:
        await release.wait()

    async with EventBus.from_env(env) as bus:
        handle = await bus.register_consumer("slow_core", "g", stuck, concurrency=1)
        with caplog.at_level(logging.WARNING, logger="cozemq.nats"):
            for _ in range(200):
                await bus.send_message("slow_core", b"x")
            await until(lambda: handle.stats.dropped > 0, 10, "the client to drop messages")
        release.set()
        assert handle.stats.dropped > 0
        assert handle.stats.received + handle.stats.dropped <= 200
        assert "slow_core/g" in caplog.text and "dropped" in caplog.text
