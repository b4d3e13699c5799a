"""Once: a stream, topic or group is set up once per key, and a failed set-up is retried."""

from __future__ import annotations

import asyncio

import pytest

from cozemq.once import Once

pytestmark = pytest.mark.asyncio


async def test_concurrent_callers_share_one_run_and_later_calls_reuse_its_result() -> None:
    runs: list[str] = []
    gate = asyncio.Event()

    async def make(key: str) -> str:
        runs.append(key)
        await gate.wait()
        return key.upper()

    once: Once[str, str] = Once(make)
    callers = [asyncio.ensure_future(once("orders")) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*callers) == ["ORDERS"] * 5
    assert await once("orders") == "ORDERS"
    assert runs == ["orders"]
    assert once.done == {"orders": "ORDERS"}


async def test_a_failed_run_is_forgotten_and_the_next_call_tries_again() -> None:
    attempts = 0

    async def make(key: str) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("broker restarting")
        return attempts

    once: Once[str, int] = Once(make)
    with pytest.raises(ConnectionError):
        await once("t")
    assert "t" not in once.done
    assert await once("t") == 2


async def test_a_cancelled_caller_leaves_the_run_going_for_the_others() -> None:
    gate = asyncio.Event()

    async def make(key: str) -> str:
        await gate.wait()
        return "ready"

    once: Once[str, str] = Once(make)
    first = asyncio.ensure_future(once("t"))
    second = asyncio.ensure_future(once("t"))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == "ready"
    assert first.cancelled()


async def test_forget_sets_up_again_on_the_next_call() -> None:
    runs = 0

    async def make(key: str) -> int:
        nonlocal runs
        runs += 1
        return runs

    once: Once[str, int] = Once(make)
    assert await once("t") == 1
    once.forget("t")
    assert await once("t") == 2
