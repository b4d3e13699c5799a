"""The RocketMQ kit serves the raw 5.x client (not cozemq); topics come from the admin client."""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest
from cozemq_rocketmq.admin import RocketMQAdmin
from cozemq_rocketmq.kit import RocketMQKit
from rocketmq import (
    ClientConfiguration,
    Credentials,
    FilterExpression,
    Message,
    Producer,
    SimpleConsumer,
)

from cozemq import EventBus
from cozemq.errors import BrokerError

pytestmark = pytest.mark.broker("rmq")


def _raw_round_trip(endpoint: str, topic: str, group: str) -> list[tuple[bytes, str | None]]:
    config = ClientConfiguration(endpoint, Credentials())
    producer = Producer(config, (topic,))
    producer.startup()
    consumer = SimpleConsumer(config, group, {topic: FilterExpression("*")}, await_duration=1)
    try:
        plain = Message()
        plain.topic, plain.body = topic, b"raw"
        producer.send(plain)
        keyed = Message()
        keyed.topic, keyed.body, keyed.message_group = topic, b"keyed", "k1"
        producer.send(keyed)
        consumer.startup()
        consumer._init_settings_event.wait(10)
        got: list[tuple[bytes, str | None]] = []
        for _ in range(20):
            for message in consumer.receive(16, 10):
                got.append((message.body, message.message_group))
                consumer.ack(message)
            if len(got) >= 2:
                break
        return got
    finally:
        producer.shutdown()
        consumer.shutdown()


async def test_raw_client_round_trip_on_a_mixed_topic(rocketmq_kit: RocketMQKit) -> None:
    topic, group = f"raw_{uuid.uuid4().hex[:8]}", f"raw_g_{uuid.uuid4().hex[:8]}"
    admin = RocketMQAdmin(rocketmq_kit.namesrv_addr)
    assert not await admin.topic_exists(topic)
    await admin.create_topic(topic)
    await admin.create_topic(topic)  # idempotent
    await admin.create_group(group, orderly=True)
    assert await admin.topic_exists(topic)
    assert await admin.master_brokers() == [rocketmq_kit.broker_addr]
    got = await asyncio.to_thread(_raw_round_trip, rocketmq_kit.grpc_endpoint, topic, group)
    assert sorted(got, key=lambda item: item[0]) == [(b"keyed", "k1"), (b"raw", None)]


def test_every_port_listens_on_loopback_only(rocketmq_kit: RocketMQKit) -> None:
    for name, port in rocketmq_kit.ports.items():
        with socket.socket() as probe:
            probe.settimeout(1)
            assert probe.connect_ex(("127.0.0.1", port)) == 0, name
    with open("/proc/net/tcp") as table:
        listening = [line.split() for line in table.readlines()[1:] if line.split()[3] == "0A"]
    ours = {f"{port:04X}" for port in rocketmq_kit.ports.values()}
    for row in listening:
        address, port = row[1].split(":")
        if port in ours:
            assert address == "0100007F", f"port {int(port, 16)} listens on {address}"


async def test_a_missing_topic_without_auto_create_names_the_fix(
    rocketmq_kit: RocketMQKit,
) -> None:
    topic = f"missing_{uuid.uuid4().hex[:8]}"
    async with EventBus.from_env(rocketmq_kit.env()) as bus:
        with pytest.raises(BrokerError, match=f"{topic}.*cozemq topic create"):
            await bus.send_message(topic, b"x")
        with pytest.raises(BrokerError, match="RMQ_AUTO_CREATE_TOPICS"):
            await bus.register_consumer(topic, "g", lambda m: None)


async def test_an_unreachable_proxy_fails_fast_with_the_address() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bus = EventBus.from_env({"COZE_MQ_TYPE": "rmq", "MQ_NAME_SERVER": f"127.0.0.1:{port}",
                             "COZEMQ_CONNECT_TIMEOUT": "1"})
    with pytest.raises(Exception, match=f"127.0.0.1:{port}"):
        await asyncio.wait_for(bus.connect(), 10)
    await bus.close()
