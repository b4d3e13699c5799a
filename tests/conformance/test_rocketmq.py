"""The shared suite against a real RocketMQ 5.3.3 (proxy in local mode), started by its kit."""

import pytest
from cozemq_rocketmq.kit import RocketMQKit

from cozemq.testing import ConformanceSuite, Harness, KitHarness

# The kit lowers the proxy's minimum invisible time to 1 s (RocketMQ's default is 10 s), so an
# unacknowledged message comes back within about 3 s and extend() is exercised within seconds.
INVISIBLE = "2"


@pytest.mark.broker("rmq")
class TestRocketMQ(ConformanceSuite):
    @pytest.fixture
    def harness(self, rocketmq_kit: RocketMQKit) -> Harness:
        return KitHarness(rocketmq_kit, name="rmq", redelivery_wait=4.0, extra_env={
            "RMQ_AUTO_CREATE_TOPICS": "true",
            "RMQ_INVISIBLE_DURATION": INVISIBLE,
            "RMQ_POLL_WAIT": "1",
        })
