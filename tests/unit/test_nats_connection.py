"""NATS connection settings: malformed URLs, unreachable servers, auth and TLS, each against a
real nats-server where a server is involved."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nkeys
import pytest
from cozemq_nats.kit import NatsKit

import cozemq
from cozemq.kit import free_port

SECRET = "pa55-Word-that-must-not-leak"


@pytest.mark.parametrize(("url", "fault"), [
    ("http://127.0.0.1:4222", "scheme 'http'"),
    ("nats://127.0.0.1:notaport", "invalid port"),
    ("nats://:4222", "no host"),
    ("nats://127.0.0.1:4222,,nats://127.0.0.1:4223", "empty entry"),
    ("nats://127.0.0.1:4222/path", "scheme://host:port only"),
])
def test_malformed_server_url_is_a_configuration_error(url: str, fault: str) -> None:
    with pytest.raises(cozemq.ConfigurationError, match=fault):
        cozemq.EventBus.from_env({"COZE_MQ_TYPE": "nats", "NATS_SERVER_URL": url})


def test_missing_server_names_both_variables() -> None:
    with pytest.raises(cozemq.ConfigurationError, match="NATS_SERVER_URL or MQ_NAME_SERVER"):
        cozemq.EventBus.from_env({"COZE_MQ_TYPE": "nats", "NATS_SERVER_URL": "",
                                  "MQ_NAME_SERVER": ""})


def test_nats_server_url_wins_over_mq_name_server_and_takes_a_cluster_list() -> None:
    bus = cozemq.EventBus.from_env({
        "COZE_MQ_TYPE": "nats", "MQ_NAME_SERVER": "nats://10.0.0.1:4222",
        "NATS_SERVER_URL": "nats://127.0.0.1:4222, tls://127.0.0.1:4223,127.0.0.1:4224",
    })
    assert bus.backend.servers == [  # type: ignore[attr-defined]
        "nats://127.0.0.1:4222", "tls://127.0.0.1:4223", "nats://127.0.0.1:4224"]


@pytest.mark.parametrize("jetstream", ["true", "false"])
async def test_unreachable_server_fails_within_the_connect_timeout(jetstream: str) -> None:
    bus = cozemq.EventBus.from_env({
        "COZE_MQ_TYPE": "nats", "NATS_SERVER_URL": f"nats://127.0.0.1:{free_port()}",
        "NATS_USE_JETSTREAM": jetstream, "COZEMQ_CONNECT_TIMEOUT": "1.5",
    })
    started = time.monotonic()
    with pytest.raises(cozemq.BrokerUnavailable, match=r"within 1\.5s"):
        await bus.connect()
    assert time.monotonic() - started < 4
    await bus.close()


async def _round_trip(env: dict[str, str]) -> bytes:
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(message: cozemq.Message) -> None:
        if not got.done():
            got.set_result(message.body)

    async with cozemq.EventBus.from_env({**env, "COZEMQ_CONNECT_TIMEOUT": "2"}) as bus:
        await bus.register_consumer("auth_check", "g", handler)
        await bus.send_message("auth_check", b"authenticated")
        return await asyncio.wait_for(got, 10)


@pytest.fixture(scope="module")
def token_kit() -> Iterator[NatsKit]:
    kit = NatsKit(extra_args=["--auth", SECRET])
    kit.start()
    yield kit
    kit.stop()


async def test_token_auth(token_kit: NatsKit) -> None:
    assert await _round_trip({**token_kit.env(), "NATS_TOKEN": SECRET}) == b"authenticated"


async def test_wrong_token_is_refused_without_leaking_it(token_kit: NatsKit) -> None:
    with pytest.raises(cozemq.BrokerUnavailable) as info:
        await _round_trip({**token_kit.env(), "NATS_TOKEN": "wrong-" + SECRET})
    assert SECRET not in str(info.value)
    assert "uthorization" in str(info.value)


async def test_user_and_password(tmp_path: Path) -> None:
    kit = NatsKit(tmp_path, extra_args=["--user", "coze", "--pass", SECRET])
    kit.start()
    try:
        env = {**kit.env(), "NATS_USERNAME": "coze", "NATS_PASSWORD": SECRET}
        assert await _round_trip(env) == b"authenticated"
    finally:
        kit.stop()


async def test_nkey_seed_as_value_and_as_file(tmp_path: Path) -> None:
    seed = nkeys.encode_seed(bytes(range(32)), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    config = tmp_path / "nkey.conf"
    config.write_text(f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}\n')
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed + b"\n")
    kit = NatsKit(tmp_path / "srv", extra_args=["-c", str(config)])
    kit.start()
    try:
        for value in (seed.decode(), str(seed_file)):
            assert await _round_trip({**kit.env(), "NATS_NKEY_SEED": value}) == b"authenticated"
    finally:
        kit.stop()


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                 "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
                 "-extfile", str(d / "san.ext"), "-out", str(d / f"{name}.pem"))
    return d


async def test_tls_with_ca_and_client_certificate(certificates: Path, tmp_path: Path) -> None:
    d = certificates
    kit = NatsKit(tmp_path, scheme="tls", extra_args=[
        "--tls", "--tlscert", str(d / "server.pem"), "--tlskey", str(d / "server.key"),
        "--tlsverify", "--tlscacert", str(d / "ca.pem")])
    kit.start()
    try:
        env = {**kit.env(), "NATS_TLS_CA_FILE": str(d / "ca.pem"),
               "NATS_TLS_CERT_FILE": str(d / "client.pem"),
               "NATS_TLS_KEY_FILE": str(d / "client.key")}
        assert await _round_trip(env) == b"authenticated"
        without_client_cert = {k: v for k, v in env.items() if "CERT_FILE" not in k
                               and "KEY_FILE" not in k}
        with pytest.raises(cozemq.BrokerUnavailable):
            await _round_trip(without_client_cert)
    finally:
        kit.stop()
