"""cozemq: Coze Studio's event bus for Python. One contract, many brokers.

    import cozemq

    async with cozemq.EventBus.from_env() as bus:          # COZE_MQ_TYPE picks the broker
        await bus.register_consumer("orders", "billing", handle)
        await bus.send_message("orders", b'{"id": 1}', key="customer-7")
"""

from __future__ import annotations

from collections.abc import Mapping

from .backend import Backend, Capabilities, Delivery, SubscribeSpec, Subscription
from .blocking import BlockingEventBus, BlockingProducer
from .bus import ConsumerHandle, EventBus, Producer
from .consumer import ConsumerHandler, ConsumerStats
from .coze import ConsumerService, new_consumer_service, new_producer
from .errors import (
    BackendNotInstalled,
    BrokerError,
    BrokerUnavailable,
    BusClosed,
    ConfigurationError,
    EventBusError,
    InvalidArgument,
    MessageTooLarge,
    NotSupported,
)
from .message import Message, OutgoingMessage
from .retry import Backoff, FixedDelays
from .settings import Settings

__version__ = "0.1.0"


async def connect(env: Mapping[str, str] | None = None) -> EventBus:
    """Build the bus from the environment and connect it: ``bus = await cozemq.connect()``."""
    bus = EventBus.from_env(env)
    try:
        await bus.connect()
    except BaseException:
        await bus.close()
        raise
    return bus


__all__ = [
    "Backend",
    "BackendNotInstalled",
    "Backoff",
    "BlockingEventBus",
    "BlockingProducer",
    "BrokerError",
    "BrokerUnavailable",
    "BusClosed",
    "Capabilities",
    "ConfigurationError",
    "ConsumerHandle",
    "ConsumerHandler",
    "ConsumerService",
    "ConsumerStats",
    "Delivery",
    "EventBus",
    "EventBusError",
    "FixedDelays",
    "InvalidArgument",
    "Message",
    "MessageTooLarge",
    "NotSupported",
    "OutgoingMessage",
    "Producer",
    "Settings",
    "SubscribeSpec",
    "Subscription",
    "__version__",
    "connect",
    "new_consumer_service",
    "new_producer",
]
