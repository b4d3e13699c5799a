"""The shared suite against a real nats-server: JetStream (Coze's default) and core NATS."""

import pytest

from cozemq.kit import BrokerKit
from cozemq.testing import ConformanceSuite, Harness, KitHarness

# A short ack deadline so redelivery and in_progress are exercised within seconds.
ACK_WAIT = "1"


@pytest.mark.broker("nats")
class TestNatsJetStream(ConformanceSuite):
    @pytest.fixture
    def harness(self, nats_kit: BrokerKit) -> Harness:
        return KitHarness(nats_kit, name="nats-jetstream", redelivery_wait=1.2,
                          extra_env={"NATS_USE_JETSTREAM": "true", "NATS_ACK_WAIT": ACK_WAIT})


@pytest.mark.broker("nats")
class TestNatsCore(ConformanceSuite):
    @pytest.fixture
    def harness(self, nats_kit: BrokerKit) -> Harness:
        return KitHarness(nats_kit, name="nats-core", redelivery_wait=0.3,
                          extra_env={"NATS_USE_JETSTREAM": "false"})
