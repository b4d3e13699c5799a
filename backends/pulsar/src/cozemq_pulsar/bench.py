"""The same bench work through pulsar-client's asyncio API directly, for `cozemq bench`
(FastStream has no Pulsar). A producer per topic, a Shared subscription per group from the
earliest message, an acknowledgement after each message is handled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import pulsar
import pulsar.asyncio as pulsar_asyncio

from cozemq.bench.drivers import BodySink, Driver
from cozemq.settings import Settings, load_settings

from .connection import namespace_of, parse_service_url
from .settings import PulsarSettings


class RawPulsarDriver(Driver):
    name = "raw"

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)
        own = load_settings(PulsarSettings, env)
        self.url = parse_service_url(load_settings(Settings, env).name_server or "")
        self.namespace = namespace_of(own)
        self.producers: dict[str, Any] = {}
        self.consumers: list[Any] = []
        self.tasks: list[asyncio.Task[None]] = []

    def _full(self, topic: str) -> str:
        return f"persistent://{self.namespace}/{topic}"

    async def start(self) -> None:
        self.client = pulsar_asyncio.Client(self.url, logger=logging.getLogger("bench.pulsar"))

    async def subscribe(self, topic: str, group: str, sink: BodySink) -> None:
        consumer = await self.client.subscribe(
            self._full(topic), group, consumer_type=pulsar.ConsumerType.Shared,
            initial_position=pulsar.InitialPosition.Earliest)
        self.consumers.append(consumer)

        async def consume() -> None:
            while True:
                message = await consumer.receive()
                sink(message.data())
                await consumer.acknowledge(message)

        self.tasks.append(asyncio.create_task(consume()))

    async def _producer(self, topic: str) -> Any:
        producer = self.producers.get(topic)
        if producer is None:
            producer = self.producers[topic] = await self.client.create_producer(
                self._full(topic), block_if_queue_full=True)
        return producer

    async def publish(self, topic: str, body: bytes) -> None:
        await (await self._producer(topic)).send(body)

    async def publish_batch(self, topic: str, bodies: list[bytes]) -> None:
        producer = await self._producer(topic)
        await asyncio.gather(*(producer.send(body) for body in bodies))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for consumer in self.consumers:
            with contextlib.suppress(Exception):
                await consumer.close()
        for producer in self.producers.values():
            with contextlib.suppress(Exception):
                await producer.close()
        await self.client.close()


def drivers() -> dict[str, type[Driver]]:
    return {"raw": RawPulsarDriver}
