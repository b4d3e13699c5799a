"""NATS decentralised auth: NATS_JWT_TOKEN + NATS_NKEY_SEED against an operator-mode server.

Core NATS is used (NATS_USE_JETSTREAM=false), so the test account needs no JetStream limits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cozemq_nats.kit import NatsKit
from natsauth import make_operator_setup

import cozemq

CONNECT_TIMEOUT = "2"


@pytest.fixture(scope="module")
def operator_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_operator_setup(tmp_path_factory.mktemp("nats-operator"))


@pytest.fixture(scope="module")
def operator_kit(operator_setup: dict[str, Any]) -> Iterator[NatsKit]:
    kit = NatsKit(extra_args=["-c", str(operator_setup["config"])],
                  client_env={"NATS_USE_JETSTREAM": "false",
                              "COZEMQ_CONNECT_TIMEOUT": CONNECT_TIMEOUT})
    kit.start()
    yield kit
    kit.stop()


async def round_trip(env: dict[str, str], topic: str) -> bytes:
    """Subscribe, send one message and return the body that arrived."""
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(message: cozemq.Message) -> None:
        if not received.done():
            received.set_result(message.body)

    async with cozemq.EventBus.from_env(env) as bus:
        await bus.register_consumer(topic, "jwt-group", handler)
        await bus.send_message(topic, b"signed in with a JWT")
        return await asyncio.wait_for(received, 10)


async def test_a_user_jwt_with_its_seed_string_sends_and_receives(
    operator_kit: NatsKit, operator_setup: dict[str, Any]
) -> None:
    env = {**operator_kit.env(), "NATS_JWT_TOKEN": operator_setup["jwt"],
           "NATS_NKEY_SEED": operator_setup["seed"]}
    assert await round_trip(env, "jwt.seed-string") == b"signed in with a JWT"


async def test_a_user_jwt_with_a_seed_file_path_sends_and_receives(
    operator_kit: NatsKit, operator_setup: dict[str, Any]
) -> None:
    env = {**operator_kit.env(), "NATS_JWT_TOKEN": operator_setup["jwt"],
           "NATS_NKEY_SEED": str(operator_setup["seed_file"])}
    assert await round_trip(env, "jwt.seed-file") == b"signed in with a JWT"


async def test_a_seed_that_does_not_match_the_jwt_is_refused_quickly_without_leaking_secrets(
    operator_kit: NatsKit, operator_setup: dict[str, Any]
) -> None:
    env = {**operator_kit.env(), "NATS_JWT_TOKEN": operator_setup["jwt"],
           "NATS_NKEY_SEED": operator_setup["other_seed"]}
    started = time.monotonic()
    with pytest.raises(cozemq.BrokerUnavailable) as caught:
        async with cozemq.EventBus.from_env(env) as bus:
            await bus.send_message("jwt.refused", b"never sent")
    assert time.monotonic() - started < 5
    text = str(caught.value)
    for secret in (operator_setup["other_seed"], operator_setup["seed"], operator_setup["jwt"]):
        assert secret not in text


def test_a_jwt_without_a_seed_is_a_configuration_error(
    operator_kit: NatsKit, operator_setup: dict[str, Any]
) -> None:
    env = {**operator_kit.env(), "NATS_JWT_TOKEN": operator_setup["jwt"]}
    with pytest.raises(cozemq.ConfigurationError, match="NATS_NKEY_SEED"):
        cozemq.EventBus.from_env(env)


async def test_a_creds_file_holding_jwt_and_seed_sends_and_receives(
    operator_kit: NatsKit, operator_setup: dict[str, Any], tmp_path: Path
) -> None:
    creds = tmp_path / "user.creds"
    jwt, seed = operator_setup["jwt"], operator_setup["seed"]
    creds.write_text(
        f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
    env = {**operator_kit.env(), "NATS_CREDS_FILE": str(creds)}
    assert await round_trip(env, "jwt.creds-file") == b"signed in with a JWT"


def test_a_missing_creds_file_is_a_configuration_error(operator_kit: NatsKit) -> None:
    with pytest.raises(cozemq.ConfigurationError, match="NATS_CREDS_FILE"):
        cozemq.EventBus.from_env({**operator_kit.env(), "NATS_CREDS_FILE": "/nonexistent.creds"})
