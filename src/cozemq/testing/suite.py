"""The conformance suite: one set of behaviours, run unchanged against every backend.

Use it from your own tests:

    from cozemq.testing import ConformanceSuite, KitHarness

    class TestMyBroker(ConformanceSuite):
        @pytest.fixture(scope="class")
        def harness(self):
            return MyHarness(...)

A behaviour the backend declares it lacks is checked the other way round (it must raise
NotSupported) or reported as not applicable, with the capability named in the skip reason.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import pytest
import pytest_asyncio

from .. import headers as h
from ..bus import ConsumerHandle, EventBus
from ..errors import (
    BusClosed,
    ConfigurationError,
    InvalidArgument,
    MessageTooLarge,
    NotSupported,
)
from ..message import Message
from .harness import Harness
from .tally import KeyOrderCheck, Tally, payload

WAIT = 30.0
"""Upper bound for anything the suite waits for; tests finish as soon as the event happens."""

FAST = 0.05
"""Retry backoff used by the suite (seconds)."""


def new_topic(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def not_applicable(harness: Harness, capability: str) -> NoReturn:
    pytest.skip(f"not applicable: {harness.name} declares {capability}=False")


async def until(condition: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    """Poll a cheap condition set by a handler (bounded; fails the test on timeout)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(0.01)


class ConformanceSuite:
    """Subclass it and provide a ``harness`` fixture returning a :class:`Harness`."""

    pytestmark = pytest.mark.asyncio

    @pytest_asyncio.fixture
    async def bus(self, harness: Harness) -> AsyncIterator[EventBus]:
        bus = harness.make_bus(COZEMQ_CLOSE_TIMEOUT="5")
        await bus.connect()
        yield bus
        await bus.close()

    @pytest_asyncio.fixture
    async def other_bus(self, harness: Harness) -> AsyncIterator[EventBus]:
        """A second connection, as another process of the service would have."""
        bus = harness.make_bus(COZEMQ_CLOSE_TIMEOUT="5")
        await bus.connect()
        yield bus
        await bus.close()

    # 1 ---------------------------------------------------------------------------------------
    async def test_payload_bytes_round_trip_exactly(self, bus: EventBus) -> None:
        topic = new_topic()
        limit = bus.capabilities.max_message_size or 1024 * 1024
        bodies = [b"", b"x", bytes(range(256)), b"\xff\xfe\x00\x80 not utf-8", b"\x01" * limit]
        got: list[bytes] = []
        await bus.register_consumer(topic, "g", lambda m: _append(got, m.body))
        for body in bodies:
            await bus.send_message(topic, body)
        await until(lambda: len(got) >= len(bodies), what="all bodies")
        assert sorted(got) == sorted(bodies)

    # 2 ---------------------------------------------------------------------------------------
    async def test_too_large_message_raises_and_sends_nothing(
        self, harness: Harness, bus: EventBus
    ) -> None:
        limit = bus.capabilities.max_message_size
        if limit is None:
            not_applicable(harness, "max_message_size")
        topic = new_topic()
        tally = Tally()
        await bus.register_consumer(topic, "g", tally, concurrency=1)
        with pytest.raises(MessageTooLarge, match=str(limit)):
            await bus.send_message(topic, b"x" * (limit + 1))
        with pytest.raises(MessageTooLarge):
            await bus.send_batch(topic, [payload("batch", 0), b"x" * (limit + 1)])
        await bus.send_message(topic, payload("marker", 0))
        await tally.wait_for(1, WAIT)
        await asyncio.sleep(0.2)
        assert tally.seen == [("marker", 0)]

    # 3 ---------------------------------------------------------------------------------------
    async def test_headers_and_key_round_trip(self, bus: EventBus) -> None:
        topic = new_topic()
        headers = {
            "X-Trace-Id": "00-abc-01",
            "mixed-Case_and.dots": "a=b; c=d, e",
            "empty": "",
            "unicode": "ünïcødé ✓ 漢字",
            "json": '{"k": [1, 2]}',
        }
        got: list[Message] = []
        await bus.register_consumer(topic, "g", lambda m: _append(got, m))
        await bus.send_message(topic, b"with", key="knowledge-42", headers=headers)
        await bus.send_message(topic, b"without")
        await until(lambda: len(got) >= 2, what="both messages")
        by_body = {m.body: m for m in got}
        assert dict(by_body[b"with"].headers) == headers
        assert by_body[b"with"].key == "knowledge-42"
        assert dict(by_body[b"without"].headers) == {}
        assert by_body[b"without"].key is None
        message = by_body[b"with"]
        assert (message.topic, message.group, message.attempt) == (topic, "g", 1)
        assert message.id and message.timestamp is not None

    async def test_invalid_headers_are_refused_before_sending(self, bus: EventBus) -> None:
        topic = new_topic()
        for bad in ({"a": "line\r\nbreak"}, {"": "v"}, {"has space": "v"},
                    {"cozemq-attempts": "1"}, {"n": 1}):
            with pytest.raises(InvalidArgument):
                await bus.send_message(topic, b"x", headers=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="key"):
            await bus.send_message(topic, b"x", key="two\nlines")

    # 4 ---------------------------------------------------------------------------------------
    async def test_topics_are_isolated(self, bus: EventBus) -> None:
        topics = [new_topic() for _ in range(4)]
        tallies = {t: Tally() for t in topics}
        for t in topics:
            await bus.register_consumer(t, "g", tallies[t])
        for round_ in range(5):
            for t in topics:
                await bus.send_message(t, payload(t, round_))
        for t in topics:
            await tallies[t].wait_for(5, WAIT)
        await asyncio.sleep(0.1)
        for t in topics:
            assert {p for p, _ in tallies[t].seen} == {t}
            assert tallies[t].report({t: 5}).lost == []

    # 5 ---------------------------------------------------------------------------------------
    async def test_each_group_gets_every_message(self, bus: EventBus) -> None:
        topic = new_topic()
        first, second = Tally(), Tally()
        await bus.register_consumer(topic, "billing", first)
        await bus.register_consumer(topic, "audit", second)
        await bus.send_batch(topic, [payload("p", i) for i in range(50)])
        for tally in (first, second):
            await tally.wait_for(50, WAIT)
            assert tally.report({"p": 50}).lost == []

    async def test_plain_functions_and_awaitable_returning_callables_are_handlers(
        self, bus: EventBus
    ) -> None:
        topic = new_topic()
        plain, returning, coroutine = Tally(), Tally(), Tally()
        await bus.register_consumer(topic, "plain", plain.record)
        await bus.register_consumer(topic, "returning", lambda message: returning(message))
        await bus.register_consumer(topic, "coroutine", coroutine)
        await bus.send_batch(topic, [payload("p", i) for i in range(20)])
        for tally in (plain, returning, coroutine):
            await tally.wait_for(20, WAIT)
            assert tally.report({"p": 20}).lost == []

    # 6 ---------------------------------------------------------------------------------------
    async def test_group_members_share_the_work(
        self, harness: Harness, bus: EventBus, other_bus: EventBus
    ) -> None:
        if not bus.capabilities.consumer_groups:
            not_applicable(harness, "consumer_groups")
        topic = new_topic()
        members = [Tally(), Tally(), Tally()]

        def slow(tally: Tally) -> Callable[[Message], Awaitable[None]]:
            async def handle(message: Message) -> None:
                tally.record(message)
                await asyncio.sleep(0.005)
            return handle

        await bus.register_consumer(topic, "workers", slow(members[0]), concurrency=4)
        await bus.register_consumer(topic, "workers", slow(members[1]), concurrency=4)
        await other_bus.register_consumer(topic, "workers", slow(members[2]), concurrency=4)
        await bus.send_batch(topic, [payload("p", i) for i in range(300)])
        await until(lambda: sum(len(m.unique()) for m in members) >= 300, what="300 messages")
        await asyncio.sleep(0.2)
        everything = [item for m in members for item in m.seen]
        assert len(everything) == len(set(everything)) == 300, "each message handled once"
        assert all(m.seen for m in members), [len(m.seen) for m in members]

    # 7 ---------------------------------------------------------------------------------------
    async def test_failed_message_comes_back_after_the_backoff_with_rising_attempt(
        self, bus: EventBus
    ) -> None:
        topic = new_topic()
        backoff = 0.3
        attempts: list[tuple[int, float]] = []

        async def flaky(message: Message) -> None:
            attempts.append((message.attempt, time.monotonic()))
            if message.attempt < 3:
                raise RuntimeError("not yet")

        handle = await bus.register_consumer(topic, "g", flaky, retry_backoff=backoff,
                                             max_deliveries=5)
        await bus.send_message(topic, b"flaky")
        await until(lambda: len(attempts) >= 3 and handle.stats.acked == 1, what="3 attempts")
        assert [a for a, _ in attempts] == [1, 2, 3]
        gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(attempts)]
        assert all(gap >= backoff * 0.9 for gap in gaps), gaps
        await asyncio.sleep(0.2)
        assert len(attempts) == 3

    # 8 ---------------------------------------------------------------------------------------
    async def test_poison_message_is_dead_lettered_and_the_stream_goes_on(
        self, bus: EventBus
    ) -> None:
        topic = new_topic()
        tally, dead = Tally(), Tally()
        poison_attempts: list[int] = []

        def handler(message: Message) -> None:  # a plain function: the inline path
            if message.body.startswith(b"poison"):
                poison_attempts.append(message.attempt)
                raise ValueError("cannot parse")
            tally.record(message)

        await bus.register_consumer(bus.dead_letter_topic_for(topic), "ops", dead)
        await bus.register_consumer(topic, "g", handler, max_deliveries=3, retry_backoff=FAST)
        await bus.send_message(topic, payload("poison", 0), key="k1", headers={"origin": "t"})
        await bus.send_batch(topic, [payload("p", i) for i in range(10)])
        await tally.wait_for(10, WAIT)
        await dead.wait_for(1, WAIT)
        letter = dead.messages[0]
        assert letter.body == payload("poison", 0)
        assert letter.key == "k1"
        assert letter.headers["origin"] == "t"
        assert letter.headers[h.DLQ_ATTEMPTS] == "3"
        assert letter.headers[h.DLQ_ORIGINAL_TOPIC] == topic
        assert letter.headers[h.DLQ_GROUP] == "g"
        assert "ValueError: cannot parse" in letter.headers[h.DLQ_ERROR]
        assert poison_attempts == [1, 2, 3]
        assert tally.report({"p": 10}).lost == []

    # 9 ---------------------------------------------------------------------------------------
    async def test_ack_is_final(self, harness: Harness, bus: EventBus) -> None:
        topic = new_topic()
        tally = Tally()
        await bus.register_consumer(topic, "g", tally)
        await bus.send_batch(topic, [payload("p", i) for i in range(20)])
        await tally.wait_for(20, WAIT)
        await asyncio.sleep(harness.redelivery_wait * 1.5)
        assert tally.report({"p": 20}).duplicates == 0

    # 10 --------------------------------------------------------------------------------------
    async def test_orderly_consumers_keep_order_per_key_across_redelivery(
        self, harness: Harness, bus: EventBus
    ) -> None:
        topic = new_topic()
        if not bus.capabilities.ordering_by_key:
            with pytest.raises(NotSupported, match="order"):
                await bus.register_consumer(topic, "g", Tally(), orderly=True)
            return
        keys = [f"doc-{k}" for k in range(4)]
        check = KeyOrderCheck(fail_first_attempt_every=5)
        await bus.register_consumer(topic, "g", check, orderly=True, concurrency=8,
                                    retry_backoff=FAST)
        for seq in range(20):
            for key in keys:
                await bus.send_message(topic, payload(key, seq), key=key)
        await until(lambda: check.count() >= 80, what="80 messages")
        assert check.overlaps == [], "two messages of one key were in handlers at once"
        for key in keys:
            assert check.handled[key] == list(range(20)), (key, check.handled[key])

    # 11 --------------------------------------------------------------------------------------
    async def test_late_group_receives_what_was_sent_before_it_joined(
        self, harness: Harness, bus: EventBus
    ) -> None:
        if not bus.capabilities.replays_to_new_groups:
            not_applicable(harness, "replays_to_new_groups")
        topic = new_topic()
        await bus.send_batch(topic, [payload("early", i) for i in range(10)])
        tally = Tally()
        await bus.register_consumer(topic, "late", tally)
        await tally.wait_for(10, WAIT)
        assert tally.report({"early": 10}).lost == []

    # 12 --------------------------------------------------------------------------------------
    async def test_consumer_closed_and_reopened_mid_stream_loses_nothing(
        self, harness: Harness, bus: EventBus, other_bus: EventBus
    ) -> None:
        if not bus.capabilities.redelivery:
            not_applicable(harness, "redelivery")
        topic = new_topic()
        tally = Tally()
        handle = await bus.register_consumer(topic, "g", tally)
        await bus.send_batch(topic, [payload("p", i) for i in range(100)])
        await until(lambda: len(tally.unique()) >= 30, what="30 messages")
        await handle.stop(timeout=5)
        await other_bus.send_batch(topic, [payload("p", i) for i in range(100, 200)])
        await bus.register_consumer(topic, "g", tally)
        await tally.wait_for(200, WAIT)
        report = tally.report({"p": 200})
        assert report.lost == [], str(report)

    # 13 --------------------------------------------------------------------------------------
    async def test_broker_killed_and_restarted_mid_stream(self, harness: Harness) -> None:
        if not harness.can_restart:
            pytest.skip(f"not run: the {harness.name} harness cannot restart its broker "
                        "(in-process, or an external broker)")
        topic = new_topic()
        producer_bus = harness.make_bus(COZEMQ_SEND_TIMEOUT="60", COZEMQ_CLOSE_TIMEOUT="5")
        consumer_bus = harness.make_bus(COZEMQ_CLOSE_TIMEOUT="5")
        tally = Tally()
        sent: list[int] = []
        total = 300
        async with producer_bus, consumer_bus:
            persistent = producer_bus.capabilities.persistent
            await consumer_bus.register_consumer(topic, "g", tally, retry_backoff=FAST)
            await producer_bus.send_message(topic, payload("warmup", 0))
            await tally.wait_for(1, WAIT)

            async def produce() -> None:
                for seq in range(total):
                    await producer_bus.send_message(topic, payload("p", seq))
                    sent.append(seq)
                    await asyncio.sleep(0.002)

            producing = asyncio.create_task(produce())
            await until(lambda: len(sent) >= total // 3, what="a third sent")
            await asyncio.to_thread(harness.restart_broker)
            await asyncio.wait_for(producing, 90)
            if persistent:
                await tally.wait_for(total + 1, 60)
                report = tally.report({"p": total})
                assert report.lost == [], str(report)
            else:
                # At most once: what was in flight may be lost, but both sides recover.
                await producer_bus.send_message(topic, payload("after", 0))
                await until(lambda: ("after", 0) in tally.unique(), 60, "recovery")

    # 14 --------------------------------------------------------------------------------------
    async def test_many_producers_and_consumers_lose_nothing(
        self, harness: Harness, bus: EventBus, other_bus: EventBus
    ) -> None:
        topic = new_topic()
        tally = Tally()
        for consumer_bus in (bus, other_bus, bus):
            await consumer_bus.register_consumer(topic, "g", tally, concurrency=16)
        producers, each = 4, 500

        async def produce(index: int) -> None:
            target = (bus, other_bus)[index % 2]
            for seq in range(each):
                await target.send_message(topic, payload(f"p{index}", seq))

        await asyncio.gather(*(produce(i) for i in range(producers)))
        await tally.wait_for(producers * each, 60)
        report = tally.report({f"p{i}": each for i in range(producers)})
        assert report.lost == [], str(report)

    # 15 --------------------------------------------------------------------------------------
    async def test_batch_send_arrives_complete_and_in_order(self, bus: EventBus) -> None:
        topic = new_topic()
        tally = Tally()
        await bus.register_consumer(topic, "g", tally, concurrency=1)
        producer = bus.producer(topic)
        await producer.batch_send([payload("b", i) for i in range(100)], sharding_key="same")
        await producer.send(payload("b", 100), sharding_key="same")
        await tally.wait_for(101, WAIT)
        report = tally.report({"b": 101})
        assert (report.lost, report.reordered, report.duplicates) == ([], 0, 0), str(report)
        assert {m.key for m in tally.messages} == {"same"}

    # 16 --------------------------------------------------------------------------------------
    async def test_close_lets_in_flight_handlers_finish_and_ack(self, harness: Harness) -> None:
        topic = new_topic()
        started, release = asyncio.Event(), asyncio.Event()
        finished: list[bytes] = []

        async def handler(message: Message) -> None:
            started.set()
            await release.wait()
            finished.append(message.body)

        bus = harness.make_bus()
        await bus.connect()
        await bus.register_consumer(topic, "g", handler)
        await bus.send_message(topic, b"in-flight")
        await asyncio.wait_for(started.wait(), WAIT)
        closing = asyncio.create_task(bus.close(timeout=10))
        await asyncio.sleep(0.1)
        assert not closing.done(), "close() must wait for the in-flight handler"
        release.set()
        await asyncio.wait_for(closing, 15)
        assert finished == [b"in-flight"]
        await bus.close()  # idempotent
        with pytest.raises(BusClosed):
            await bus.send_message(topic, b"late")
        with pytest.raises(BusClosed):
            await bus.register_consumer(topic, "g", handler)

        # It was acked: the group does not see it again.
        async with harness.make_bus() as again:
            tally = Tally()
            await again.register_consumer(topic, "g", tally)
            await again.send_message(topic, payload("marker", 0))
            await tally.wait_for(1, WAIT)
            await asyncio.sleep(harness.redelivery_wait)
            assert tally.seen == [("marker", 0)]

    # 17 --------------------------------------------------------------------------------------
    async def test_handler_cancelled_at_the_close_deadline_is_not_acked(
        self, harness: Harness
    ) -> None:
        if not harness.capabilities.redelivery:
            not_applicable(harness, "redelivery")
        topic = new_topic()
        started = asyncio.Event()

        async def stuck(message: Message) -> None:
            started.set()
            await asyncio.sleep(3600)

        bus = harness.make_bus()
        await bus.connect()
        await bus.register_consumer(topic, "g", stuck)
        await bus.send_message(topic, b"stuck")
        await asyncio.wait_for(started.wait(), WAIT)
        began = time.monotonic()
        await bus.close(timeout=0.2)
        assert time.monotonic() - began < 5, "close() must honour its deadline"

        async with harness.make_bus() as again:
            got: list[Message] = []
            await again.register_consumer(topic, "g", lambda m: _append(got, m))
            await until(lambda: bool(got), what="the cancelled message to come back")
            assert got[0].body == b"stuck"
            if harness.capabilities.attempts_survive_rejoin:
                assert got[0].attempt >= 2

    # 18 --------------------------------------------------------------------------------------
    async def test_slow_handler_is_not_redelivered_under_it(
        self, harness: Harness, bus: EventBus
    ) -> None:
        if not bus.capabilities.ack_deadline:
            not_applicable(harness, "ack_deadline")
        topic = new_topic()
        deliveries: list[int] = []

        async def slow(message: Message) -> None:
            deliveries.append(message.attempt)
            await asyncio.sleep(harness.redelivery_wait * 2.5)

        handle = await bus.register_consumer(topic, "g", slow)
        await bus.send_message(topic, b"slow")
        await until(lambda: handle.stats.acked == 1, what="the slow message to be acked")
        await asyncio.sleep(harness.redelivery_wait * 1.5)
        assert deliveries == [1]

    # 19 --------------------------------------------------------------------------------------
    async def test_bad_input_gets_clear_errors(self, harness: Harness, bus: EventBus) -> None:
        topic = new_topic()
        with pytest.raises(InvalidArgument, match="bytes"):
            await bus.send_message(topic, "text")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="topic"):
            await bus.send_message("bad topic", b"x")
        with pytest.raises(InvalidArgument, match="topic"):
            await bus.send_message("", b"x")
        with pytest.raises(InvalidArgument, match="group"):
            await bus.register_consumer(topic, "bad group", Tally())
        with pytest.raises(InvalidArgument, match="handler"):
            await bus.register_consumer(topic, "g", "not callable")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="empty"):
            await bus.send_batch(topic, [])
        with pytest.raises(ConfigurationError, match="nats, nsq, pulsar"):
            EventBus.from_env({**harness.env(), "COZE_MQ_TYPE": "rabbit"})

    # 20 --------------------------------------------------------------------------------------
    async def test_slow_consumer_holds_a_bounded_number_of_messages(self, bus: EventBus) -> None:
        topic = new_topic()
        tally = Tally()

        async def slow(message: Message) -> None:
            tally.record(message)
            await asyncio.sleep(0.005)

        handle = await bus.register_consumer(topic, "g", slow, concurrency=2)
        await bus.send_batch(topic, [payload("p", i) for i in range(300)])
        await tally.wait_for(300, 60)
        assert handle.stats.max_in_flight <= 2

    # declared limits -------------------------------------------------------------------------
    async def test_idempotency_key_dedups_but_a_shared_sharding_key_does_not(
        self, bus: EventBus
    ) -> None:
        topic = new_topic()
        if not bus.capabilities.deduplication:
            with pytest.raises(NotSupported, match="dedup"):
                await bus.send_message(topic, b"x", idempotency_key="once")
            return
        tally = Tally()
        await bus.register_consumer(topic, "g", tally)
        await bus.send_message(topic, payload("d", 0), idempotency_key="order-1")
        await bus.send_message(topic, payload("d", 0), idempotency_key="order-1")
        for seq in range(1, 6):  # distinct messages sharing a sharding key must all arrive
            await bus.send_message(topic, payload("d", seq), key="knowledge-7")
        await tally.wait_for(6, WAIT)
        await asyncio.sleep(0.2)
        report = tally.report({"d": 6})
        assert (report.lost, report.duplicates) == ([], 0), str(report)

    async def test_coze_handler_object_and_topic_bound_producer(self, bus: EventBus) -> None:
        topic = new_topic()
        tally = Tally()

        class KnowledgeHandler:
            async def handle_message(self, msg: Message) -> None:
                tally.record(msg)

        await bus.register_consumer(topic, "cg_knowledge", KnowledgeHandler())
        producer = bus.producer(topic)
        await producer.send(payload("c", 0), sharding_key="doc-1")
        await producer.batch_send([payload("c", 1), payload("c", 2)], sharding_key="doc-1")
        await tally.wait_for(3, WAIT)
        assert {m.group for m in tally.messages} == {"cg_knowledge"}


def _append(target: list[Any], item: Any) -> None:
    target.append(item)


__all__ = ["ConformanceSuite", "ConsumerHandle", "new_topic", "until"]
