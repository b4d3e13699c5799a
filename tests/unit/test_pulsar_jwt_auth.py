"""JWT token auth against the kit's broker started with authentication and authorization on:
a valid token round-trips; a bad or missing token fails within the connect timeout with a
clear error that never shows the token."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator

import pytest
from cozemq_pulsar.kit import PulsarKit

import cozemq

pytestmark = pytest.mark.broker("pulsar")


@pytest.fixture(scope="module")
def auth_kit(pulsar_kit: PulsarKit) -> Iterator[PulsarKit]:
    """One broker of ours at a time: the shared broker pauses while the auth broker runs."""
    pulsar_kit.stop()
    kit = PulsarKit(auth=True)
    try:
        kit.start()
        kit.grant("app")
        yield kit
    finally:
        kit.stop()
        pulsar_kit.start()


def env(kit: PulsarKit, token: str | None) -> dict[str, str]:
    values = {"COZE_MQ_TYPE": "pulsar", "MQ_NAME_SERVER": kit.url,
              "COZEMQ_CONNECT_TIMEOUT": "3"}
    if token is not None:
        values["PULSAR_JWT_TOKEN"] = token
    return values


async def test_a_valid_token_round_trips(auth_kit: PulsarKit) -> None:
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(message: cozemq.Message) -> None:
        if not got.done():
            got.set_result(message.body)

    async with cozemq.EventBus.from_env(env(auth_kit, auth_kit.mint_token("app"))) as bus:
        await bus.register_consumer("auth_check", "g", handler)
        await bus.send_message("auth_check", b"authenticated")
        assert await asyncio.wait_for(got, 15) == b"authenticated"


@pytest.mark.parametrize("case", ["wrong key", "missing"])
async def test_a_bad_or_missing_token_fails_fast_and_never_shows_the_token(
    auth_kit: PulsarKit, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = auth_kit.mint_token("app", key=os.urandom(32)) if case == "wrong key" else None
    caplog.set_level(logging.DEBUG)
    bus = cozemq.EventBus.from_env(env(auth_kit, token))
    started = time.monotonic()
    with pytest.raises(cozemq.BrokerUnavailable, match="PULSAR_JWT_TOKEN") as raised:
        await bus.connect()
    assert time.monotonic() - started < 3 + 2
    await bus.close()
    if token is not None:
        assert token not in str(raised.value)
        assert token not in caplog.text
        assert token not in repr(bus)


async def test_a_role_without_permission_gets_a_clear_refusal(auth_kit: PulsarKit) -> None:
    bus = cozemq.EventBus.from_env(env(auth_kit, auth_kit.mint_token("nobody")))
    with pytest.raises(cozemq.BrokerError, match="no permission"):
        await bus.connect()
    await bus.close()
