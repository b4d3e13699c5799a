"""The same bench work through aiokafka directly and through FastStream, for `cozemq bench`.

Each does what cozemq does on the wire: acks=all with idempotence, one record per message, a
consumer group per group reading from the earliest offset, offsets committed after handling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cozemq.bench.drivers import BodySink, Driver
from cozemq.settings import Settings, load_settings

from .connection import parse_bootstrap
from .settings import KafkaSettings


def _bootstrap(env: Mapping[str, str]) -> tuple[list[str], KafkaSettings]:
    return parse_bootstrap(load_settings(Settings, env).name_server), load_settings(
        KafkaSettings, env)


async def _create_topic(bootstrap: list[str], topic: str, own: KafkaSettings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, own.topic_partitions, own.topic_replication)])
    finally:
        await admin.close()


class RawKafkaDriver(Driver):
    name = "raw"

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)
        self.bootstrap, self.own = _bootstrap(env)
        self.consumers: list[AIOKafkaConsumer] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                         enable_idempotence=self.own.idempotence, linger_ms=0)
        await self.producer.start()

    async def ready(self, topic: str) -> None:
        await _create_topic(self.bootstrap, topic, self.own)

    async def subscribe(self, topic: str, group: str, sink: BodySink) -> None:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=self.bootstrap, group_id=group,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        self.consumers.append(consumer)

        async def consume() -> None:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=256)
                for records in batches.values():
                    for record in records:
                        sink(record.value)
                if batches:
                    await consumer.commit()

        self.tasks.append(asyncio.create_task(consume()))

    async def publish(self, topic: str, body: bytes) -> None:
        await self.producer.send_and_wait(topic, body)

    async def publish_batch(self, topic: str, bodies: list[bytes]) -> None:
        futures = [await self.producer.send(topic, body) for body in bodies]
        await asyncio.gather(*futures)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for consumer in self.consumers:
            await consumer.stop()
        await self.producer.stop()


class FastStreamKafkaDriver(Driver):
    name = "faststream"

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)
        self.bootstrap, self.own = _bootstrap(env)

    async def start(self) -> None:
        from faststream.kafka import KafkaBroker

        # No per-message log lines: they would be most of its cost, and cozemq logs none.
        self.broker = KafkaBroker(self.bootstrap, acks="all",
                                  enable_idempotence=self.own.idempotence, logger=None)

    async def ready(self, topic: str) -> None:
        await _create_topic(self.bootstrap, topic, self.own)

    async def subscribe(self, topic: str, group: str, sink: BodySink) -> None:
        async def handle(body: bytes) -> None:
            sink(body)

        subscriber: Any = self.broker.subscriber(topic, group_id=group,
                                                 auto_offset_reset="earliest")
        subscriber(handle)

    async def begin(self) -> None:
        await self.broker.start()

    async def publish(self, topic: str, body: bytes) -> None:
        await self.broker.publish(body, topic)

    async def publish_batch(self, topic: str, bodies: list[bytes]) -> None:
        await self.broker.publish_batch(*bodies, topic=topic)

    async def close(self) -> None:
        await self.broker.stop()


def drivers() -> dict[str, type[Driver]]:
    found: dict[str, type[Driver]] = {"raw": RawKafkaDriver}
    try:
        import faststream.kafka  # noqa: F401
    except ImportError:
        return found
    found["faststream"] = FastStreamKafkaDriver
    return found
