"""ACL 2.0: the kit's broker with authentication and authorization on, RMQ_ACCESS_KEY/SECRET_KEY."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from cozemq_rocketmq.kit import RocketMQKit

from cozemq import EventBus, Message
from cozemq.errors import EventBusError

pytestmark = pytest.mark.broker("rmq")


@pytest.fixture(scope="module")
def acl_kit() -> Iterator[RocketMQKit]:
    kit = RocketMQKit(acl=True)
    kit.start()
    yield kit
    kit.stop()


async def test_the_access_key_sends_receives_and_creates_topics(acl_kit: RocketMQKit) -> None:
    topic = f"acl_{uuid.uuid4().hex[:8]}"
    env = {**acl_kit.env(), "RMQ_AUTO_CREATE_TOPICS": "true", "RMQ_POLL_WAIT": "1"}
    got: list[Message] = []
    async with EventBus.from_env(env) as bus:
        await bus.register_consumer(topic, "acl_group", lambda m: got.append(m))
        await bus.send_message(topic, b"signed", key="k")
        for _ in range(300):
            if got:
                break
            await asyncio.sleep(0.05)
    assert [m.body for m in got] == [b"signed"]


async def test_a_wrong_secret_is_refused_and_not_shown(acl_kit: RocketMQKit) -> None:
    env = {**acl_kit.env(), "RMQ_SECRET_KEY": "wrong-secret-123", "RMQ_AUTO_CREATE_TOPICS": "true",
           "COZEMQ_SEND_TIMEOUT": "2"}
    bus = EventBus.from_env(env)
    with pytest.raises(EventBusError) as refused:
        await bus.send_message(f"acl_{uuid.uuid4().hex[:8]}", b"x")
    await bus.close()
    assert "wrong-secret-123" not in str(refused.value)
    assert acl_kit.admin_secret not in str(refused.value)
