"""Pulsar configuration: service URLs, names, TLS and token settings, checked before any
connection is made; an unreachable broker fails within the connect timeout."""

from __future__ import annotations

import time

import pytest
from cozemq_pulsar.backend import METADATA_RESERVE, PulsarBackend
from cozemq_pulsar.connection import parse_service_url

import cozemq
from cozemq.kit import free_port
from cozemq.message import OutgoingMessage

SECRET = "eyJhbGciOiJIUzI1NiJ9.not-a-real-token-but-secret"


def backend(**env: str) -> PulsarBackend:
    bus = cozemq.EventBus.from_env({"COZE_MQ_TYPE": "pulsar",
                                    "MQ_NAME_SERVER": "pulsar://127.0.0.1:6650", **env})
    assert isinstance(bus.backend, PulsarBackend)
    return bus.backend


@pytest.mark.parametrize(("raw", "url"), [
    ("pulsar://127.0.0.1:6650", "pulsar://127.0.0.1:6650"),
    ("127.0.0.1:6650", "pulsar://127.0.0.1:6650"),
    ("pulsar+ssl://broker.example:6651", "pulsar+ssl://broker.example:6651"),
    (" pulsar://h1:6650,h2:6650/ ", "pulsar://h1:6650,h2:6650"),
])
def test_service_urls_accepted_and_bare_host_port_gets_the_scheme(raw: str, url: str) -> None:
    assert parse_service_url(raw) == url


@pytest.mark.parametrize(("raw", "fault"), [
    ("http://127.0.0.1:6650", "scheme 'http'"),
    ("pulsar://127.0.0.1:port", "invalid port"),
    ("pulsar://:6650", "no host"),
    ("pulsar://127.0.0.1", "no port"),
    ("pulsar://127.0.0.1:6650/path", "scheme://host:port only"),
    ("pulsar://user:pw@127.0.0.1:6650", "PULSAR_JWT_TOKEN"),
])
def test_malformed_service_url_is_a_configuration_error(raw: str, fault: str) -> None:
    with pytest.raises(cozemq.ConfigurationError, match=fault):
        backend(MQ_NAME_SERVER=raw)


def test_missing_name_server_says_what_to_set() -> None:
    with pytest.raises(cozemq.ConfigurationError, match="MQ_NAME_SERVER"):
        cozemq.EventBus.from_env({"COZE_MQ_TYPE": "pulsar", "MQ_NAME_SERVER": ""})


def test_topics_map_into_the_configured_tenant_and_namespace() -> None:
    assert backend().topic_name("opencoze_knowledge") == \
        "persistent://public/default/opencoze_knowledge"
    custom = backend(PULSAR_TENANT="coze", PULSAR_NAMESPACE="events")
    assert custom.topic_name("t.dlq") == "persistent://coze/events/t.dlq"
    with pytest.raises(cozemq.ConfigurationError, match="PULSAR_NAMESPACE"):
        backend(PULSAR_NAMESPACE="a/b")


@pytest.mark.parametrize("name", ["has space", "a/b", "persistent://public/default/x", "ü"])
def test_names_pulsar_cannot_hold_are_refused(name: str) -> None:
    with pytest.raises(cozemq.InvalidArgument, match="topic"):
        backend().validate_name("topic", name)


def test_declared_size_limit_leaves_room_for_metadata_and_counts_key_and_headers() -> None:
    b = backend(PULSAR_MAX_MESSAGE_SIZE="1048576")
    assert b.capabilities.max_message_size == 1048576 - METADATA_RESERVE
    assert b.message_size(OutgoingMessage(b"x" * 10)) == 10
    assert b.message_size(OutgoingMessage(b"x" * 10, key="k", headers={"h": "v"})) > 10 + 3


def test_token_is_secret_in_settings_repr_and_doctor_output() -> None:
    b = backend(PULSAR_JWT_TOKEN=SECRET)
    assert SECRET not in repr(b.pulsar_settings)
    assert b.shown_settings()["PULSAR_JWT_TOKEN"] == "******"
    assert SECRET not in b.describe()


def test_tls_files_must_exist_and_need_a_tls_url(tmp_path: object) -> None:
    with pytest.raises(cozemq.ConfigurationError, match="PULSAR_TLS_CA_FILE"):
        backend(MQ_NAME_SERVER="pulsar+ssl://127.0.0.1:6651", PULSAR_TLS_CA_FILE="/nonexistent")
    with pytest.raises(cozemq.ConfigurationError, match="together"):
        backend(MQ_NAME_SERVER="pulsar+ssl://127.0.0.1:6651", PULSAR_TLS_CERT_FILE="/etc/hosts")
    with pytest.raises(cozemq.ConfigurationError, match="pulsar\\+ssl"):
        backend(PULSAR_TLS_CA_FILE="/etc/hosts")


async def test_unreachable_broker_fails_within_the_connect_timeout() -> None:
    bus = cozemq.EventBus.from_env({
        "COZE_MQ_TYPE": "pulsar", "MQ_NAME_SERVER": f"127.0.0.1:{free_port()}",
        "COZEMQ_CONNECT_TIMEOUT": "1.5",
    })
    started = time.monotonic()
    with pytest.raises(cozemq.BrokerUnavailable, match=r"within 1\.5s"):
        await bus.connect()
    assert time.monotonic() - started < 4
    await bus.close()
