"""The shared suite against a real Apache Kafka (KRaft) started by its kit."""

import pytest

from cozemq.kit import BrokerKit
from cozemq.testing import ConformanceSuite, Harness, KitHarness

# Six partitions so the suite's three group members each own some; quick heartbeats so a
# member joining or leaving rebalances the group within a second (6 s is the broker's minimum
# session timeout).
KAFKA_TEST_ENV = {
    "KAFKA_TOPIC_PARTITIONS": "6",
    "KAFKA_SESSION_TIMEOUT_MS": "6000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
    "KAFKA_REQUEST_TIMEOUT_MS": "10000",
}


@pytest.mark.broker("kafka")
class TestKafka(ConformanceSuite):
    @pytest.fixture
    def harness(self, kafka_kit: BrokerKit) -> Harness:
        return KitHarness(kafka_kit, name="kafka", redelivery_wait=1.0, extra_env=KAFKA_TEST_ENV)
