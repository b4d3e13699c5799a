"""Connecting over TLS: mutual TLS against the kit's SSL listener (which requires a client
certificate signed by the session's CA), and the clear errors of a client that gets it wrong."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from cozemq_kafka.kit import KafkaKit
from fixtures.kafka import make_ca

from cozemq import EventBus
from cozemq.errors import BrokerUnavailable, ConfigurationError
from cozemq.kit import BrokerKit
from cozemq.testing import Tally
from cozemq.testing.tally import payload

pytestmark = [pytest.mark.asyncio, pytest.mark.broker("kafka")]

CLIENT_PAIR = ("KAFKA_TLS_CERT_FILE", "KAFKA_TLS_KEY_FILE")


def tls_env(kit: BrokerKit) -> dict[str, str]:
    if not isinstance(kit, KafkaKit) or kit.tls is None:
        pytest.skip("not applicable: the external kafka broker has no SSL listener from the kit")
    return {**kit.tls_env(), "COZEMQ_CONNECT_TIMEOUT": "3"}


async def test_mutual_tls_round_trip_with_the_ca_and_a_client_certificate(
    kafka_kit: BrokerKit,
) -> None:
    env = tls_env(kafka_kit)
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SSL" and all(env[name] for name in CLIENT_PAIR)
    topic = f"tls{uuid.uuid4().hex[:10]}"
    async with EventBus.from_env(env) as bus:
        tally = Tally()
        await bus.register_consumer(topic, "g", tally)
        await bus.send_message(topic, payload("a", 0), key="k", headers={"h": "v"})
        await tally.wait_for(1, 30)
        assert tally.messages[0].headers == {"h": "v"}


async def test_without_a_client_certificate_the_error_names_the_cert_settings(
    kafka_kit: BrokerKit,
) -> None:
    env = {k: v for k, v in tls_env(kafka_kit).items() if k not in CLIENT_PAIR}
    bus = EventBus.from_env(env)
    began = time.monotonic()
    with pytest.raises(ConfigurationError, match="refused the client certificate") as info:
        await bus.connect()
    assert time.monotonic() - began < 6
    assert "KAFKA_TLS_CERT_FILE" in str(info.value) and "KAFKA_TLS_KEY_FILE" in str(info.value)
    await bus.close()


async def test_trusting_the_wrong_ca_names_the_ca_setting(
    kafka_kit: BrokerKit, tmp_path: Path,
) -> None:
    other_ca = make_ca(tmp_path, "other-ca")
    env = {**tls_env(kafka_kit), "KAFKA_TLS_CA_FILE": str(other_ca)}
    bus = EventBus.from_env(env)
    began = time.monotonic()
    with pytest.raises(ConfigurationError, match="is not trusted") as info:
        await bus.connect()
    assert time.monotonic() - began < 6
    assert f"KAFKA_TLS_CA_FILE={str(other_ca)!r}" in str(info.value)
    await bus.close()


async def test_tls_against_a_plaintext_listener_is_unavailable_naming_the_protocol(
    kafka_kit: BrokerKit,
) -> None:
    env = {**tls_env(kafka_kit), "MQ_NAME_SERVER": kafka_kit.env()["MQ_NAME_SERVER"]}
    bus = EventBus.from_env(env)
    began = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="KAFKA_SECURITY_PROTOCOL") as info:
        await bus.connect()
    assert time.monotonic() - began < 6
    assert "KAFKA_TLS_CA_FILE" in str(info.value)
    await bus.close()
