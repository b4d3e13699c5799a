"""The same bench work through nats-py directly and through FastStream, for `cozemq bench`.

Each does what cozemq does on the wire: core publish / queue subscription, or JetStream publish
with an ack, a stream per topic, a durable pull consumer per group with explicit acks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import nats
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from cozemq.bench.drivers import BodySink, Driver
from cozemq.settings import Settings, load_settings

from .connection import parse_servers
from .jetstream import durable_name, stream_name
from .settings import NatsSettings

FETCH_BATCH = 256


def _target(env: Mapping[str, str]) -> tuple[list[str], bool]:
    own = load_settings(NatsSettings, env)
    raw = own.server_url or load_settings(Settings, env).name_server or ""
    return parse_servers(raw, "NATS_SERVER_URL or MQ_NAME_SERVER"), own.use_jetstream


class RawNatsDriver(Driver):
    name = "raw"

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)
        self.servers, self.jetstream = _target(env)
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False

    async def start(self) -> None:
        self.nc: Client = await nats.connect(self.servers)
        self.js = self.nc.jetstream()

    async def ready(self, topic: str) -> None:
        if self.jetstream:
            await self.js.add_stream(name=stream_name(topic), subjects=[topic])

    async def subscribe(self, topic: str, group: str, sink: BodySink) -> None:
        if not self.jetstream:
            async def on_message(msg: Any) -> None:
                sink(msg.data)

            await self.nc.subscribe(topic, queue=group, cb=on_message)
            await self.nc.flush()
            return
        config = ConsumerConfig(durable_name=durable_name(group), ack_policy=AckPolicy.EXPLICIT,
                                deliver_policy=DeliverPolicy.ALL, filter_subject=topic)
        await self.js.add_consumer(stream_name(topic), config)
        psub = await self.js.pull_subscribe_bind(durable=config.durable_name,
                                                 stream=stream_name(topic))

        async def pull() -> None:
            while not self.stopping:
                try:
                    msgs = await psub.fetch(batch=FETCH_BATCH, timeout=0.5)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                for msg in msgs:
                    sink(msg.data)
                    await msg.ack()

        self.tasks.append(asyncio.create_task(pull()))

    async def publish(self, topic: str, body: bytes) -> None:
        if self.jetstream:
            await self.js.publish(topic, body)
        else:
            await self.nc.publish(topic, body)

    async def publish_batch(self, topic: str, bodies: list[bytes]) -> None:
        if not self.jetstream:
            for body in bodies:
                await self.nc.publish(topic, body)
            return
        acks = [await self.js.publish_async(topic, body) for body in bodies]
        await asyncio.gather(*acks)

    async def close(self) -> None:
        # Let each pull end after its current fetch: nats-py can swallow a cancel that
        # lands inside fetch() and hang the task.
        self.stopping = True
        if self.tasks:
            _, late = await asyncio.wait(self.tasks, timeout=5)
            for task in late:
                task.cancel()
        await self.nc.close()


class FastStreamNatsDriver(Driver):
    name = "faststream"

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)
        self.servers, self.jetstream = _target(env)

    async def start(self) -> None:
        from faststream.nats import NatsBroker

        # No per-message log lines: they would be most of its cost, and cozemq logs none.
        self.broker = NatsBroker(self.servers, logger=None)
        self.streams: dict[str, Any] = {}

    async def ready(self, topic: str) -> None:
        if self.jetstream:
            from faststream.nats import JStream

            self.streams[topic] = JStream(stream_name(topic), subjects=[topic])

    async def subscribe(self, topic: str, group: str, sink: BodySink) -> None:
        async def handle(body: bytes) -> None:
            sink(body)

        if self.jetstream:
            from faststream.nats import PullSub

            subscriber = self.broker.subscriber(
                topic, stream=self.streams[topic], durable=durable_name(group),
                pull_sub=PullSub(batch_size=FETCH_BATCH, timeout=0.5),
                deliver_policy=DeliverPolicy.ALL)
        else:
            subscriber = self.broker.subscriber(topic, queue=group)
        subscriber(handle)

    async def begin(self) -> None:
        await self.broker.start()

    async def publish(self, topic: str, body: bytes) -> None:
        stream = stream_name(topic) if self.jetstream else None
        await self.broker.publish(body, topic, stream=stream)

    async def close(self) -> None:
        await self.broker.stop()


def drivers() -> dict[str, type[Driver]]:
    found: dict[str, type[Driver]] = {"raw": RawNatsDriver}
    try:
        import faststream.nats  # noqa: F401
    except ImportError:
        return found
    found["faststream"] = FastStreamNatsDriver
    return found
