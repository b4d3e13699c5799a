"""The shared suite against a real Apache Pulsar standalone broker started by its kit."""

import pytest
from cozemq_pulsar.kit import PulsarKit

from cozemq.testing import ConformanceSuite, Harness, KitHarness


@pytest.mark.broker("pulsar")
class TestPulsar(ConformanceSuite):
    @pytest.fixture
    def harness(self, pulsar_kit: PulsarKit) -> Harness:
        # No ack timeout: an unacknowledged message comes back when its consumer leaves or
        # nacks it (consumer nack delay 0.1 s); 1 s is ample for "would have come back".
        return KitHarness(pulsar_kit, redelivery_wait=1.0)
