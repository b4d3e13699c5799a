"""The Coze-shaped constructors and the blocking facade, on the memory backend."""

import asyncio
import threading

import pytest

import cozemq
from cozemq import BlockingEventBus, Message

MEMORY = {"COZE_MQ_TYPE": "memory"}


async def test_new_producer_and_consumer_service_follow_coze_shapes() -> None:
    received: list[Message] = []
    done = asyncio.Event()

    class Handler:
        async def handle_message(self, msg: Message) -> None:
            received.append(msg)
            done.set()

    service = cozemq.new_consumer_service(MEMORY)
    await service.register_consumer("shared", "opencoze_knowledge", "cg_knowledge", Handler())
    producer = await cozemq.new_producer("shared", "opencoze_knowledge", "pg", retries=2,
                                         env=MEMORY)
    await producer.send(b'{"doc": 1}', sharding_key="doc-1")
    await asyncio.wait_for(done.wait(), 5)
    await producer.close()
    await service.close()
    assert received[0].body == b'{"doc": 1}'
    assert (received[0].group, received[0].key) == ("cg_knowledge", "doc-1")


async def test_new_producer_refuses_a_bad_name_server() -> None:
    with pytest.raises(cozemq.InvalidArgument, match="name_server"):
        await cozemq.new_producer("", "t", "g", env=MEMORY)


async def test_connect_builds_and_connects_from_the_environment() -> None:
    bus = await cozemq.connect(MEMORY)
    assert "connected" in repr(bus)
    await bus.close()
    assert bus.closed


def test_blocking_facade_runs_plain_function_handlers_in_threads() -> None:
    got: list[bytes] = []
    threads: set[str] = set()
    arrived = threading.Event()

    def handler(message: Message) -> None:  # a plain function may block
        threads.add(threading.current_thread().name)
        got.append(message.body)
        if len(got) == 4:
            arrived.set()

    with BlockingEventBus.from_env(MEMORY) as bus:
        bus.register_consumer("jobs", "workers", handler)
        bus.send_message("jobs", b"1")
        bus.send_batch("jobs", [b"2", b"3"])
        bus.producer("jobs").send(b"4", sharding_key="k")
        assert arrived.wait(5)
    assert sorted(got) == [b"1", b"2", b"3", b"4"]
    assert "cozemq-loop" not in threads
    with pytest.raises(cozemq.BusClosed):
        bus.send_message("jobs", b"late")
    bus.close()  # idempotent
