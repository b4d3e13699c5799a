"""RocketMQ settings: where the client connects, names, secrets, the remoting frame."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cozemq_rocketmq.admin import RemotingResponse, decode_frame, encode_frame, sign
from cozemq_rocketmq.backend import RocketMQBackend, message_group
from cozemq_rocketmq.connection import resolve_endpoints
from cozemq_rocketmq.settings import RocketMQSettings

from cozemq import EventBus
from cozemq.errors import ConfigurationError, InvalidArgument
from cozemq.settings import load_settings


def endpoints(**env: str):  # type: ignore[no-untyped-def]
    own = load_settings(RocketMQSettings, env)
    return resolve_endpoints(own, env.get("MQ_NAME_SERVER"))


def test_mq_name_server_is_the_proxy_grpc_endpoint() -> None:
    found = endpoints(MQ_NAME_SERVER="10.0.0.5:8081")
    assert (found.proxy, found.namesrv) == ("10.0.0.5:8081", None)


def test_coze_name_server_form_maps_to_the_proxy_on_the_same_host() -> None:
    found = endpoints(MQ_NAME_SERVER="rocketmq-namesrv:9876")
    assert found.proxy == "rocketmq-namesrv:8081"
    assert found.namesrv == "rocketmq-namesrv:9876"
    assert found.mapped_from == "rocketmq-namesrv:9876"


def test_proxy_endpoint_wins_and_mq_name_server_then_names_the_name_server() -> None:
    found = endpoints(MQ_NAME_SERVER="ns:9876", RMQ_PROXY_ENDPOINT="http://proxy:8081")
    assert (found.proxy, found.namesrv) == ("proxy:8081", "ns:9876")


@pytest.mark.parametrize("bad", ["proxy", "proxy:", "proxy:http", "host:70000"])
def test_malformed_addresses_are_refused_with_the_variable_named(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="MQ_NAME_SERVER"):
        endpoints(MQ_NAME_SERVER=bad)


def test_missing_endpoint_says_what_to_set() -> None:
    with pytest.raises(ConfigurationError, match="RMQ_PROXY_ENDPOINT"):
        endpoints()


def test_auto_create_needs_the_name_server() -> None:
    with pytest.raises(ConfigurationError, match="RMQ_NAMESRV_ADDR"):
        EventBus.from_env({"COZE_MQ_TYPE": "rmq", "MQ_NAME_SERVER": "127.0.0.1:8081",
                           "RMQ_AUTO_CREATE_TOPICS": "true"})


def test_secrets_are_masked_and_never_in_errors() -> None:
    env = {"COZE_MQ_TYPE": "rocketmq", "MQ_NAME_SERVER": "127.0.0.1:8081",
           "RMQ_ACCESS_KEY": "ak-visible?", "RMQ_SECRET_KEY": "s3cr3t-value"}
    bus = EventBus.from_env(env)
    shown = bus.backend.shown_settings()
    assert shown["RMQ_SECRET_KEY"] == "******"
    assert "s3cr3t-value" not in repr(bus) + repr(shown) + bus.backend.describe()
    with pytest.raises(ConfigurationError) as raised:
        EventBus.from_env({**env, "RMQ_INVISIBLE_DURATION": "soon"})
    assert "s3cr3t-value" not in str(raised.value)


def test_half_credentials_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="RMQ_SECRET_KEY"):
        EventBus.from_env({"COZE_MQ_TYPE": "rmq", "MQ_NAME_SERVER": "127.0.0.1:8081",
                           "RMQ_ACCESS_KEY": "ak"})


def test_names_follow_rocketmq_rules_and_dead_letters_use_an_underscore() -> None:
    bus = EventBus.from_env({"COZE_MQ_TYPE": "rmq", "MQ_NAME_SERVER": "127.0.0.1:8081"})
    backend = bus.backend
    assert isinstance(backend, RocketMQBackend)
    backend.validate_name("topic", "opencoze_knowledge")
    backend.validate_name("topic", "%RETRY%cg-1")
    for bad in ("orders.created", "has space", "x" * 128, ""):
        with pytest.raises(InvalidArgument):
            backend.validate_name("topic", bad)
    assert bus.dead_letter_topic_for("opencoze_knowledge") == "opencoze_knowledge_dlq"
    assert backend.ack_extend_interval is not None
    assert backend.ack_extend_interval < backend.rmq_settings.invisible_duration


def test_long_keys_become_a_stable_hashed_message_group() -> None:
    assert message_group("doc-7") == "doc-7"
    long_key = "k" * 200
    assert message_group(long_key) == message_group(long_key)
    assert len(message_group(long_key)) <= 64


def test_remoting_frame_round_trips_and_signature_matches_the_java_hook() -> None:
    frame = encode_frame({"code": 17, "flag": 0, "extFields": {"topic": "t"}}, b"body")
    header, body = decode_frame(frame[4:])
    assert (header["code"], header["extFields"], body) == (17, {"topic": "t"}, b"body")
    fields = {"topic": "t", "AccessKey": "ak", "perm": "6"}
    expected = base64.b64encode(
        hmac.new(b"sk", b"ak6t" + b"body", hashlib.sha1).digest()).decode()
    assert sign(fields, b"body", "sk") == expected


def test_fastjson_integer_map_keys_are_read() -> None:
    response = RemotingResponse(0, None, {}, b'{"brokerAddrs":{0:"127.0.0.1:10911"}}')
    assert response.json_body() == {"brokerAddrs": {"0": "127.0.0.1:10911"}}
