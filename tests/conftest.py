"""Real brokers for the whole run: each kit starts once per test session, on first use, and
stops at the end. A broker that cannot start fails every test that needs it (an error, never a
skip). The fixtures live in tests/fixtures/, one module per broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fixtures.nats import nats_kit

from cozemq.memory import MemoryBroker

__all__ = ["nats_kit"]


@pytest.fixture(autouse=True)
def _fresh_memory_brokers() -> Iterator[None]:
    yield
    MemoryBroker.reset()
