"""Kafka settings, bootstrap parsing, name rules, size accounting and offset bookkeeping."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka import errors as ke
from cozemq_kafka.backend import KafkaBackend
from cozemq_kafka.connection import parse_bootstrap, security_options, translate
from cozemq_kafka.settings import BROKER_MESSAGE_MAX_BYTES, KafkaSettings
from cozemq_kafka.subscription import PartitionState, decode_counts, encode_counts

from cozemq import EventBus
from cozemq.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigurationError,
    InvalidArgument,
    MessageTooLarge,
)
from cozemq.message import OutgoingMessage
from cozemq.settings import load_settings

BASE = {"COZE_MQ_TYPE": "kafka", "MQ_NAME_SERVER": "127.0.0.1:9092"}


def bus(**env: str) -> EventBus:
    return EventBus.from_env({**BASE, **env})


def test_the_bootstrap_list_is_split_and_a_missing_port_is_9092() -> None:
    assert parse_bootstrap("a:9093, b ,PLAINTEXT://c:1/") == ["a:9093", "b:9092", "c:1"]
    assert parse_bootstrap("[::1]:9092") == ["[::1]:9092"]


@pytest.mark.parametrize("raw", ["", "a:9092,,b:9092", "a:port", "a b:9092", "a:70000"])
def test_a_malformed_bootstrap_list_is_a_configuration_error(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="MQ_NAME_SERVER"):
        parse_bootstrap(raw)


def test_credentials_in_the_bootstrap_list_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_bootstrap("kafka://bob:hunter2@host:9092")
    assert "hunter2" not in str(info.value)


def test_defaults() -> None:
    s = load_settings(KafkaSettings, {})
    assert (s.topic_partitions, s.topic_replication, s.client_id) == (3, 1, "cozemq")
    assert security_options(s) == {"security_protocol": "PLAINTEXT"}


def test_sasl_settings_pick_sasl_plaintext_and_the_password_stays_secret() -> None:
    env = {"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "svc",
           "KAFKA_SASL_PASSWORD": "s3cret-pw"}
    s = load_settings(KafkaSettings, env)
    options = security_options(s)
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "s3cret-pw"
    assert "s3cret-pw" not in repr(s)
    shown = bus(**env).backend.shown_settings()
    assert shown["KAFKA_SASL_PASSWORD"] == "******"
    assert "s3cret-pw" not in repr(bus(**env))


def test_incomplete_or_contradictory_security_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="KAFKA_SASL_USERNAME"):
        bus(KAFKA_SASL_MECHANISM="PLAIN")
    with pytest.raises(ConfigurationError, match="KAFKA_SASL_MECHANISM"):
        bus(KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    with pytest.raises(ConfigurationError, match="KAFKA_SASL_MECHANISM"):
        bus(KAFKA_SECURITY_PROTOCOL="PLAINTEXT", KAFKA_SASL_MECHANISM="PLAIN",
            KAFKA_SASL_USERNAME="u", KAFKA_SASL_PASSWORD="p")
    with pytest.raises(ConfigurationError, match="KAFKA_TLS_CA_FILE"):
        bus(KAFKA_TLS_CA_FILE="/nonexistent/ca.pem")
    with pytest.raises(ConfigurationError, match="KAFKA_SASL_MECHANISM"):
        bus(KAFKA_SASL_MECHANISM="GSSAPI")
    with pytest.raises(ConfigurationError) as info:
        bus(KAFKA_SASL_PASSWORD="x" * 3, KAFKA_TOPIC_PARTITIONS="zero")
    assert "KAFKA_TOPIC_PARTITIONS" in str(info.value)


@pytest.mark.parametrize("name", ["orders", "a.b_c-D9", "x" * 249, "opencoze_knowledge.dlq"])
def test_kafka_names_are_accepted(name: str) -> None:
    bus().backend.validate_name("topic", name)


@pytest.mark.parametrize("name", [".", "..", "x" * 250, "has space", "a/b", "ünï", "a:b"])
def test_names_kafka_refuses_are_invalid_arguments(name: str) -> None:
    with pytest.raises(InvalidArgument, match="group"):
        bus().backend.validate_name("group", name)


def test_the_size_limit_is_the_broker_limit_minus_the_record_framing() -> None:
    backend = bus().backend
    limit = backend.capabilities.max_message_size
    assert limit is not None and BROKER_MESSAGE_MAX_BYTES - 100 < limit < BROKER_MESSAGE_MAX_BYTES
    assert backend.message_size(OutgoingMessage(b"x" * limit)) == limit
    keyed = OutgoingMessage(b"x" * limit, key="k", headers={"h": "v"})
    assert backend.message_size(keyed) > limit
    smaller = bus(KAFKA_MAX_MESSAGE_BYTES="100000").capabilities.max_message_size
    assert smaller is not None and smaller < 100000


def test_idempotency_keys_are_not_supported_and_ordering_is() -> None:
    caps = bus().capabilities
    assert (caps.deduplication, caps.ordering_by_key, caps.delayed_redelivery) == (
        False, True, False)


def test_client_errors_become_cozemq_errors() -> None:
    assert isinstance(translate(ke.KafkaConnectionError("down"), "send"), BrokerUnavailable)
    assert isinstance(translate(ke.KafkaTimeoutError(), "send"), BrokerUnavailable)
    assert isinstance(translate(ke.NotLeaderForPartitionError(), "send"), BrokerUnavailable)
    assert isinstance(translate(ke.MessageSizeTooLargeError(), "send"), MessageTooLarge)
    assert isinstance(translate(ke.TopicAuthorizationFailedError(), "send"), BrokerError)


def test_commits_never_pass_an_open_message() -> None:
    state = PartitionState(TopicPartition("t", 0), {})
    assert state.commit_point() is None
    state.open = {10: 1, 11: 1, 12: 2}
    state.next_offset = 13
    del state.open[11]  # acked out of order: the commit stays at 10
    assert state.commit_point() == (10, "cozemq:10=1,12=2")
    del state.open[10]
    assert state.commit_point() == (12, "cozemq:12=2")
    del state.open[12]
    assert state.commit_point() == (13, "")


def test_delivery_counts_round_trip_through_commit_metadata() -> None:
    assert decode_counts(encode_counts({5: 2, 3: 1})) == {3: 1, 5: 2}
    assert decode_counts("") == {} and decode_counts("someone else's") == {}
    many = encode_counts({i: 1 for i in range(100_000, 101_000)})
    assert len(many) <= 3500 and decode_counts(many)[100_000] == 1


def test_the_backend_is_registered_under_kafka() -> None:
    assert isinstance(bus().backend, KafkaBackend)
    assert repr(bus(MQ_NAME_SERVER="a:1,b:2")) == "<EventBus kafka://a:1,b:2 new>"
