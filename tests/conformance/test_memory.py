"""The shared suite against the in-process memory backend."""

import pytest

from cozemq.testing import ConformanceSuite, Harness, MemoryHarness


class TestMemory(ConformanceSuite):
    @pytest.fixture
    def harness(self) -> Harness:
        harness = MemoryHarness()
        harness.redelivery_wait = 0.2
        return harness
