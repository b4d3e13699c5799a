"""The kit's broker is a real Kafka: a raw aiokafka round trip (no cozemq) through a group."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cozemq.kit import BrokerKit

pytestmark = [pytest.mark.asyncio, pytest.mark.broker("kafka")]


async def test_raw_client_round_trip_with_headers_and_committed_offsets(
    kafka_kit: BrokerKit,
) -> None:
    bootstrap = kafka_kit.env()["MQ_NAME_SERVER"]
    topic, group = f"raw{uuid.uuid4().hex[:10]}", f"g{uuid.uuid4().hex[:6]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=b"k",
                                         headers=[("h", str(i).encode())])
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    got: list[tuple[bytes, list[tuple[str, bytes]]]] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < 10:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got += [(r.value or b"", list(r.headers)) for r in records]
        await consumer.commit()
        committed = await consumer.committed(next(iter(consumer.assignment())))
    finally:
        await consumer.stop()
    assert [body for body, _ in got] == [f"m{i}".encode() for i in range(10)]
    assert got[3][1] == [("h", b"3")]
    assert committed == 10
