"""Real brokers for the whole run: each kit starts once per test session and stops at the end.

A broker that cannot start fails every test that needs it (an error, not a skip).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cozemq_nats.kit import NatsKit

from cozemq.memory import MemoryBroker


@pytest.fixture(scope="session")
def nats_kit() -> Iterator[NatsKit]:
    kit = NatsKit()
    kit.start()
    yield kit
    kit.stop()


@pytest.fixture(autouse=True)
def _fresh_memory_brokers() -> Iterator[None]:
    yield
    MemoryBroker.reset()
