"""Connecting: SASL/SCRAM-SHA-256 against the kit's SCRAM listener, and unreachable brokers."""

from __future__ import annotations

import time
import uuid

import pytest
from cozemq_kafka.kit import KafkaKit

from cozemq import EventBus
from cozemq.errors import BrokerUnavailable, ConfigurationError
from cozemq.kit import BrokerKit, free_port
from cozemq.testing import Tally
from cozemq.testing.tally import payload

pytestmark = pytest.mark.asyncio


def scram_env(kit: BrokerKit) -> dict[str, str]:
    if not isinstance(kit, KafkaKit) or not kit.scram_users:
        pytest.skip("not applicable: the external kafka broker has no SCRAM listener")
    return kit.sasl_env()


@pytest.mark.broker("kafka")
async def test_scram_round_trip_with_the_right_password(kafka_kit: BrokerKit) -> None:
    topic = f"auth{uuid.uuid4().hex[:10]}"
    async with EventBus.from_env(scram_env(kafka_kit)) as bus:
        tally = Tally()
        await bus.register_consumer(topic, "g", tally)
        await bus.send_message(topic, payload("a", 0), key="k", headers={"h": "v"})
        await tally.wait_for(1, 30)
        assert tally.messages[0].headers == {"h": "v"}


@pytest.mark.broker("kafka")
async def test_a_wrong_password_is_a_clear_error_within_the_timeout(
    kafka_kit: BrokerKit,
) -> None:
    env = {**scram_env(kafka_kit), "KAFKA_SASL_PASSWORD": "wrong-pass-93",
           "COZEMQ_CONNECT_TIMEOUT": "3"}
    bus = EventBus.from_env(env)
    began = time.monotonic()
    with pytest.raises(ConfigurationError, match="refused the SCRAM-SHA-256 login") as info:
        await bus.connect()
    assert time.monotonic() - began < 6
    text = str(info.value)
    assert "KAFKA_SASL_USERNAME='alice'" in text and "KAFKA_SASL_PASSWORD" in text
    assert "wrong-pass-93" not in text and "wrong-pass-93" not in repr(info.value)
    await bus.close()


async def test_an_unreachable_broker_is_broker_unavailable_within_the_timeout() -> None:
    env = {"COZE_MQ_TYPE": "kafka", "MQ_NAME_SERVER": f"127.0.0.1:{free_port()}",
           "COZEMQ_CONNECT_TIMEOUT": "1.5"}
    bus = EventBus.from_env(env)
    began = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1"):
        await bus.connect()
    assert time.monotonic() - began < 4
    await bus.close()
