"""The kit's broker with the raw pulsar client (no cozemq): it serves on loopback only."""

from __future__ import annotations

import subprocess
import uuid

import pulsar
import pytest
from cozemq_pulsar.kit import PulsarKit

pytestmark = pytest.mark.broker("pulsar")


def test_raw_client_round_trip_with_key_and_properties(pulsar_kit: PulsarKit) -> None:
    topic = f"persistent://public/default/kit-{uuid.uuid4().hex[:8]}"
    client = pulsar.Client(pulsar_kit.url, operation_timeout_seconds=10)
    try:
        consumer = client.subscribe(topic, "kit", consumer_type=pulsar.ConsumerType.Shared,
                                    initial_position=pulsar.InitialPosition.Earliest)
        producer = client.create_producer(topic)
        producer.send(b"hello", properties={"h": "v"}, partition_key="k")
        message = consumer.receive(timeout_millis=10_000)
        assert (message.data(), message.properties(), message.partition_key()) == \
            (b"hello", {"h": "v"}, "k")
        consumer.acknowledge(message)
    finally:
        client.close()


def test_every_listening_socket_is_on_loopback(pulsar_kit: PulsarKit) -> None:
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    mine = [line for line in out.splitlines() if f"pid={pulsar_kit.pid}," in line]
    assert len(mine) >= 3, out  # broker, web, in-process bookie
    assert all(" 127.0.0.1:" in line for line in mine), mine
