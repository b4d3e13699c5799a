"""The same bench work through rocketmq-python-client directly, for `cozemq bench` (FastStream
has no RocketMQ). A Producer sending NORMAL messages, a SimpleConsumer per group receiving in
batches and acking each message, the client's blocking calls on worker threads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cozemq.bench.drivers import BodySink, Driver
from cozemq.settings import Settings, load_settings

from .admin import RocketMQAdmin
from .connection import resolve_endpoints
from .settings import RocketMQSettings

RECEIVE_BATCH = 32


class RawRocketMQDriver(Driver):
    name = "raw"

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)
        self.own = load_settings(RocketMQSettings, env)
        self.endpoints = resolve_endpoints(self.own, load_settings(Settings, env).name_server)
        self.executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="bench-rmq")
        self.consumers: list[Any] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def start(self) -> None:
        import rocketmq

        self.rmq = rocketmq
        self.config = rocketmq.ClientConfiguration(self.endpoints.proxy,
                                                   rocketmq.Credentials("", ""))
        self.producer = rocketmq.Producer(self.config)
        await self._run(self.producer.startup)

    async def ready(self, topic: str) -> None:
        admin = RocketMQAdmin(self.endpoints.namesrv, cluster=self.own.cluster)
        await admin.create_topic(topic, queues=self.own.topic_queues)

    async def subscribe(self, topic: str, group: str, sink: BodySink) -> None:
        admin = RocketMQAdmin(self.endpoints.namesrv, cluster=self.own.cluster)
        await admin.create_group(group)
        consumer = self.rmq.SimpleConsumer(self.config, group,
                                           {topic: self.rmq.FilterExpression("*")},
                                           await_duration=self.own.poll_wait)
        await self._run(consumer.startup)
        event = consumer._init_settings_event
        if event is not None:
            await self._run(event.wait, 10)
        self.consumers.append(consumer)

        async def consume() -> None:
            while True:
                try:
                    messages = await self._run(consumer.receive, RECEIVE_BATCH, 30)
                except Exception:
                    continue  # an empty long poll raises in this client
                for message in messages or ():
                    sink(message.body)
                    await self._run(consumer.ack, message)

        self.tasks.append(asyncio.create_task(consume()))

    async def publish(self, topic: str, body: bytes) -> None:
        message = self.rmq.Message()
        message.topic = topic
        message.body = body
        await self._run(self.producer.send, message)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for consumer in self.consumers:
            with contextlib.suppress(Exception):
                await self._run(consumer.shutdown)
        with contextlib.suppress(Exception):
            await self._run(self.producer.shutdown)
        self.executor.shutdown(wait=False, cancel_futures=True)


def drivers() -> dict[str, type[Driver]]:
    return {"raw": RawRocketMQDriver}
