"""NSQ configuration, names, the envelope, and an unreachable nsqd: no broker needed."""

from __future__ import annotations

import time

import pytest
from cozemq_nsq import envelope
from cozemq_nsq.connection import parse_name_server

import cozemq
from cozemq.kit import free_port

SECRET = "nsq-auth-secret-that-must-not-leak"


def bus(**env: str) -> cozemq.EventBus:
    return cozemq.EventBus.from_env({"COZE_MQ_TYPE": "nsq", **env})


# -- MQ_NAME_SERVER ---------------------------------------------------------------------------

def test_bare_host_port_is_nsqd_and_http_is_nsqlookupd() -> None:
    parsed = parse_name_server("127.0.0.1:4150, http://10.0.0.2:4161,tcp://nsqd-2:5150,"
                               "https://lookupd:8443")
    assert parsed.nsqd == (("127.0.0.1", 4150), ("nsqd-2", 5150))
    assert parsed.lookupd == ("http://10.0.0.2:4161", "https://lookupd:8443")


def test_port_4161_without_scheme_is_taken_as_nsqlookupd() -> None:
    parsed = parse_name_server("nsqlookupd:4161")
    assert parsed.nsqd == () and parsed.lookupd == ("http://nsqlookupd:4161",)


@pytest.mark.parametrize(("value", "fault"), [
    ("nats://127.0.0.1:4150", "scheme 'nats'"),
    ("127.0.0.1:notaport", "invalid port"),
    ("127.0.0.1", "no port"),
    (":4150", "no host"),
    ("127.0.0.1:4150,,127.0.0.1:4151", "empty entry"),
    ("http://127.0.0.1:4161/lookup", "host:port only"),
    ("", "MQ_NAME_SERVER"),
])
def test_malformed_name_server_is_a_configuration_error(value: str, fault: str) -> None:
    with pytest.raises(cozemq.ConfigurationError, match=fault):
        bus(MQ_NAME_SERVER=value)


def test_credentials_in_the_address_are_refused_without_echoing_them() -> None:
    with pytest.raises(cozemq.ConfigurationError, match="NSQ_AUTH_SECRET") as caught:
        bus(MQ_NAME_SERVER=f"http://user:{SECRET}@127.0.0.1:4161")
    assert SECRET not in str(caught.value)


# -- settings ---------------------------------------------------------------------------------

def test_settings_shape_the_backend_and_hide_the_secret() -> None:
    b = bus(MQ_NAME_SERVER="127.0.0.1:4150", NSQ_MSG_TIMEOUT="6", NSQ_MAX_MSG_SIZE="2048",
            NSQ_AUTH_SECRET=SECRET)
    assert b.backend.ack_extend_interval == 2.0
    assert b.capabilities.max_message_size == 2048 - envelope.OVERHEAD
    shown = b.backend.shown_settings()
    assert shown["NSQ_AUTH_SECRET"] == "******"
    assert SECRET not in repr(b) + repr(shown) + b.backend.describe()


def test_bad_setting_names_the_variable_and_hides_secrets() -> None:
    with pytest.raises(cozemq.ConfigurationError, match="NSQ_MSG_TIMEOUT"):
        bus(MQ_NAME_SERVER="127.0.0.1:4150", NSQ_MSG_TIMEOUT="0.1")
    with pytest.raises(cozemq.ConfigurationError, match="NSQ_TLS_CERT_FILE"):
        bus(MQ_NAME_SERVER="127.0.0.1:4150", NSQ_TLS_CERT_FILE="/nonexistent.pem")


def test_declared_capabilities() -> None:
    caps = bus(MQ_NAME_SERVER="127.0.0.1:4150").capabilities
    assert (caps.persistent, caps.redelivery, caps.replays_to_new_groups,
            caps.consumer_groups, caps.ordering_by_key, caps.native_headers,
            caps.delayed_redelivery, caps.deduplication, caps.ack_deadline) == (
        False, True, False, True, False, False, True, False, True)
    assert caps.max_message_size == 1048576 - envelope.OVERHEAD


# -- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["opencoze_knowledge", "a.b-c_D9", "x" * 64, "t#ephemeral"])
def test_valid_nsq_names(name: str) -> None:
    bus(MQ_NAME_SERVER="127.0.0.1:4150").backend.validate_name("topic", name)


@pytest.mark.parametrize("name", ["x" * 65, "has space", "a/b", "a#b", "ünï"])
def test_invalid_nsq_names_are_refused_naming_the_kind(name: str) -> None:
    backend = bus(MQ_NAME_SERVER="127.0.0.1:4150").backend
    with pytest.raises(cozemq.InvalidArgument, match="group"):
        backend.validate_name("group", name)


# -- the envelope -----------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "key", "headers"), [
    (b"", None, None),
    (b"plain", "doc-7", None),
    (b"\x00\xff binary", None, {"X-Trace": "1", "unicode": "ünïcødé ✓", "empty": ""}),
    (envelope.MAGIC + b"\x01looks like an envelope", None, None),
    (b"k", "", {"a": "b"}),
])
def test_envelope_round_trips(body: bytes, key: str | None,
                              headers: dict[str, str] | None) -> None:
    wire = envelope.encode(body, key, headers)
    assert len(wire) == envelope.encoded_size(body, key, headers)
    assert envelope.decode(wire) == (body, key, headers or {})


def test_plain_bodies_travel_unwrapped_and_foreign_bodies_arrive_unchanged() -> None:
    assert envelope.encode(b'{"doc": 7}') == b'{"doc": 7}'
    for foreign in (b'{"doc": 7}', envelope.MAGIC, envelope.MAGIC + b"\x01\x00garbage",
                    envelope.encode(b"x", "k")[:-1], envelope.encode(b"x", "k") + b"!"):
        assert envelope.decode(foreign) == (foreign, None, {})


# -- an unreachable nsqd ----------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["", "http://"])
async def test_unreachable_broker_fails_within_the_connect_timeout(scheme: str) -> None:
    b = bus(MQ_NAME_SERVER=f"{scheme}127.0.0.1:{free_port()}", COZEMQ_CONNECT_TIMEOUT="1.5")
    started = time.monotonic()
    with pytest.raises(cozemq.BrokerUnavailable):
        await b.connect()
    assert time.monotonic() - started < 4
    await b.close()
