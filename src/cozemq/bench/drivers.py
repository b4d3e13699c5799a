"""The same work done three ways: through cozemq, through the broker's raw client, through
FastStream. A backend package offers its raw and FastStream drivers through the entry-point
group ``cozemq.bench`` (name = COZE_MQ_TYPE, value = a callable returning {driver name: class})."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points

from ..bus import EventBus
from ..errors import NotSupported
from ..message import Message
from ..registry import canonical_name

BodySink = Callable[[bytes], None]


class Driver(ABC):
    """One way of publishing and consuming, for the bench."""

    name: str = "driver"

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)

    async def start(self) -> None:
        """Connect."""

    @abstractmethod
    async def subscribe(self, topic: str, group: str, sink: BodySink) -> None: ...

    async def ready(self, topic: str) -> None:
        """Anything to set up before subscribing (a stream, a topic)."""

    async def begin(self) -> None:
        """Called once every subscription is made, before timing starts."""

    @abstractmethod
    async def publish(self, topic: str, body: bytes) -> None: ...

    async def publish_batch(self, topic: str, bodies: list[bytes]) -> None:
        for body in bodies:
            await self.publish(topic, body)

    @abstractmethod
    async def close(self) -> None: ...


class CozemqDriver(Driver):
    name = "cozemq"

    async def start(self) -> None:
        self.bus = EventBus.from_env(self.env)
        await self.bus.connect()

    async def ready(self, topic: str) -> None:
        # Like the raw drivers: the topic exists before timing starts, where that is a thing.
        with contextlib.suppress(NotSupported):
            await self.bus.create_topic(topic)

    async def subscribe(self, topic: str, group: str, sink: BodySink) -> None:
        def handle(message: Message) -> None:
            sink(message.body)

        await self.bus.register_consumer(topic, group, handle, concurrency=256)

    async def publish(self, topic: str, body: bytes) -> None:
        await self.bus.send_message(topic, body)

    async def publish_batch(self, topic: str, bodies: list[bytes]) -> None:
        await self.bus.send_batch(topic, bodies)

    async def close(self) -> None:
        await self.bus.close(5)


def drivers_for(mq_type: str | None) -> dict[str, type[Driver]]:
    """cozemq's driver plus whatever the backend package offers for comparison."""
    found: dict[str, type[Driver]] = {"cozemq": CozemqDriver}
    name = canonical_name(mq_type)
    for ep in entry_points(group="cozemq.bench", name=name):
        found.update(ep.load()())
    return found
