"""Real brokers for the whole run: each kit starts once per test session, on first use, and
stops at the end. A broker that cannot start fails every test that needs it (an error, never a
skip). The fixtures live in tests/fixtures/, one module per broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fixtures.kafka import kafka_kit
from fixtures.nats import nats_kit
from fixtures.nsq import nsq_kit
from fixtures.pulsar import pulsar_kit
from fixtures.rocketmq import rocketmq_kit

from cozemq.memory import MemoryBroker

__all__ = ["kafka_kit", "nats_kit", "nsq_kit", "pulsar_kit", "rocketmq_kit"]


@pytest.fixture(autouse=True)
def _fresh_memory_brokers() -> Iterator[None]:
    yield
    MemoryBroker.reset()
