"""Coze Studio's Go constructors, in Python: NewProducer and NewConsumerService.

They take the name server explicitly, as Coze's do; COZE_MQ_TYPE and every other setting
still come from the environment.
"""

from __future__ import annotations

from collections.abc import Mapping

from .bus import ConsumerHandle, EventBus, Producer
from .consumer import Handler
from .errors import InvalidArgument


def _env_with(name_server: str, env: Mapping[str, str] | None) -> dict[str, str]:
    if not isinstance(name_server, str) or not name_server:
        raise InvalidArgument("name_server must be a non-empty str (Coze's MQ_NAME_SERVER)")
    merged = dict(env or {})
    merged["MQ_NAME_SERVER"] = name_server
    return merged


async def new_producer(
    name_server: str,
    topic: str,
    group: str,
    *,
    retries: int = 0,
    env: Mapping[str, str] | None = None,
) -> Producer:
    """A connected producer bound to ``topic`` (Coze's ``NewProducer``).

    ``group`` is accepted for Coze's signature (RocketMQ names producer groups); ``retries``
    resends after errors a retry can help. Call ``await producer.close()`` when done.
    """
    if not isinstance(retries, int) or retries < 0:
        raise InvalidArgument(f"retries must be an int >= 0, got {retries!r}")
    bus = EventBus.from_env(_env_with(name_server, env))
    try:
        await bus.connect()
        bus.producer(topic)  # validates the topic name now rather than on the first send
    except BaseException:
        await bus.close()
        raise
    return Producer(bus, topic, retries=retries, owns_bus=True)


class ConsumerService:
    """Coze's ConsumerService: one bus per name server, shared by its consumers."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = env
        self._buses: dict[str, EventBus] = {}

    async def register_consumer(
        self,
        name_server: str,
        topic: str,
        group: str,
        handler: Handler,
        *,
        orderly: bool = False,
    ) -> ConsumerHandle:
        bus = self._buses.get(name_server)
        if bus is None:
            bus = EventBus.from_env(_env_with(name_server, self._env))
            await bus.connect()
            self._buses[name_server] = bus
        return await bus.register_consumer(topic, group, handler, orderly=orderly)

    async def close(self, timeout: float | None = None) -> None:
        buses, self._buses = list(self._buses.values()), {}
        for bus in buses:
            await bus.close(timeout)


def new_consumer_service(env: Mapping[str, str] | None = None) -> ConsumerService:
    """Coze's ``NewConsumerService``."""
    return ConsumerService(env)
