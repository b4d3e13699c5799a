"""The same bench work through pynsq directly, for `cozemq bench` (FastStream has no NSQ).

PUB per message (MPUB for batches), one channel per group, FIN after the handler returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import nsq

from cozemq.bench.drivers import BodySink, Driver
from cozemq.settings import Settings, load_settings

from .connection import lookupd_nodes, parse_name_server

READY_WAIT = 10.0


class RawNsqDriver(Driver):
    name = "raw"

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)
        self.addresses = parse_name_server(load_settings(Settings, env).name_server)
        self.readers: list[Any] = []

    async def start(self) -> None:
        nodes = list(self.addresses.nsqd) or await lookupd_nodes(self.addresses.lookupd, 5.0)
        self.nsqd = [f"{host}:{port}" for host, port in nodes]
        self.writer = nsq.Writer(self.nsqd)
        await _until(lambda: bool(self.writer.conns), "the writer to connect")

    async def subscribe(self, topic: str, group: str, sink: BodySink) -> None:
        def handle(message: Any) -> bool:
            sink(message.body)
            return True  # FIN

        reader = nsq.Reader(topic, group, handle, nsqd_tcp_addresses=self.nsqd,
                            max_in_flight=256, lookupd_poll_jitter=0.0)
        self.readers.append(reader)

    async def begin(self) -> None:
        await _until(lambda: all(r.conns for r in self.readers), "the readers to subscribe")
        await asyncio.sleep(0.2)  # let nsqd create the channels before the first PUB

    async def publish(self, topic: str, body: bytes) -> None:
        await self._send(self.writer.pub, topic, body)

    async def publish_batch(self, topic: str, bodies: list[bytes]) -> None:
        await self._send(self.writer.mpub, topic, bodies)

    async def _send(self, method: Any, topic: str, payload: Any) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def callback(conn: Any, data: Any) -> None:
            if done.done():
                return
            if isinstance(data, Exception):
                done.set_exception(data)
            else:
                done.set_result(None)

        method(topic, payload, callback)
        await done

    async def close(self) -> None:
        for reader in self.readers:
            reader.close()
        # pynsq's Writer has no close(): close its connections and stop it reconnecting.
        self.writer.reconnect_interval = 3600.0
        for conn in list(self.writer.conns.values()):
            conn.close()


async def _until(condition: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + READY_WAIT
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def drivers() -> dict[str, type[Driver]]:
    return {"raw": RawNsqDriver}
