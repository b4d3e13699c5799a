"""The shared suite against real nsqd and nsqlookupd: MQ_NAME_SERVER naming nsqd (as Coze
does) and naming nsqlookupd."""

import pytest
from cozemq_nsq.kit import NsqKit

from cozemq.testing import ConformanceSuite, Harness, KitHarness

# A short message timeout (sent by the client in IDENTIFY) so redelivery of unfinished
# messages and TOUCH are exercised within seconds.
MSG_TIMEOUT = "2"
REDELIVERY_WAIT = 2.5


@pytest.mark.broker("nsq")
class TestNsq(ConformanceSuite):
    @pytest.fixture
    def harness(self, nsq_kit: NsqKit) -> Harness:
        return KitHarness(nsq_kit, name="nsq", redelivery_wait=REDELIVERY_WAIT,
                          extra_env={"NSQ_MSG_TIMEOUT": MSG_TIMEOUT})


@pytest.mark.broker("nsq")
class TestNsqThroughLookupd(ConformanceSuite):
    @pytest.fixture
    def harness(self, nsq_kit: NsqKit) -> Harness:
        if not isinstance(nsq_kit, NsqKit):
            pytest.skip("not run: an external nsqd (COZEMQ_TEST_NSQ_SERVER) has no kit lookupd")
        return KitHarness(nsq_kit, name="nsq-lookupd", redelivery_wait=REDELIVERY_WAIT,
                          extra_env={"MQ_NAME_SERVER": nsq_kit.lookupd_http,
                                     "NSQ_MSG_TIMEOUT": MSG_TIMEOUT,
                                     "NSQ_LOOKUPD_POLL_INTERVAL": "1"})
