"""One cozemq group member as one member of a Kafka consumer group.

Kafka keeps one committed offset per partition and no per-message acknowledgement, so this
module keeps the acknowledgements: per partition, the offsets handed to the core and not yet
settled. The committed offset is the lowest of those (or, when none is open, one past the last
delivered), so an acknowledgement that arrives out of order never commits past a message still
being handled. Kafka has no per-message redelivery either: ``nack`` hands the message back to
this member's next fetch (after its delay) and the partition's commit stays below it, so a member
that closes or crashes leaves it to the group.

Delivery counts ride in the commit's metadata ("offset=count" of the open messages), so a message
given back at close or rebalance arrives at its next owner with the count raised. After a crash
only the last commit is known: a message delivered after it starts again at 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka import errors as ke
from aiokafka.abc import ConsumerRebalanceListener

from cozemq.backend import Delivery, SubscribeSpec, Subscription
from cozemq.errors import BrokerUnavailable, BusClosed

from .connection import translate

if TYPE_CHECKING:
    from .backend import KafkaBackend

log = logging.getLogger("cozemq.kafka")

METADATA_PREFIX = "cozemq:"
COMMIT_INTERVAL = 0.1
"""Acks within this many seconds share one commit. A commit per ack, awaited by the handler's
worker, would bound a consumer to one commit round trip per message; a crash can at most
redeliver this window's acked messages (duplicates, never loss)."""
METADATA_LIMIT = 3500
"""Brokers accept 4096 bytes of commit metadata by default (offset.metadata.max.bytes)."""


def encode_counts(counts: dict[int, int]) -> str:
    """Delivery counts of open messages as commit metadata, lowest offsets first, bounded."""
    text = METADATA_PREFIX
    for offset in sorted(counts):
        item = f"{offset}={counts[offset]},"
        if len(text) + len(item) > METADATA_LIMIT:
            break
        text += item
    return text.rstrip(",") if counts else ""


def decode_counts(metadata: str | None) -> dict[int, int]:
    """The inverse of encode_counts; anything else (another client's metadata) is ignored."""
    if not metadata or not metadata.startswith(METADATA_PREFIX):
        return {}
    counts: dict[int, int] = {}
    for item in metadata[len(METADATA_PREFIX):].split(","):
        offset, _, count = item.partition("=")
        with contextlib.suppress(ValueError):
            counts[int(offset)] = int(count)
    return counts


class PartitionState:
    """What this member holds of one assigned partition."""

    def __init__(self, tp: TopicPartition, counts: dict[int, int]) -> None:
        self.tp = tp
        self.open: dict[int, int] = {}
        """Offsets handed to the core and not yet acknowledged -> their delivery count."""
        self.handed: set[int] = set()
        """Offsets the core holds right now (open minus those waiting to be handed back)."""
        self.next_offset: int | None = None
        """One past the highest offset delivered."""
        self.committed: tuple[int, str] | None = None
        self.earlier_counts = counts
        """Delivery counts a previous owner recorded in its last commit."""
        self.revoked = False

    def commit_point(self) -> tuple[int, str] | None:
        """(offset, metadata) to commit, or None if nothing was delivered yet."""
        if self.open:
            return min(self.open), encode_counts(self.open)
        if self.next_offset is None:
            return None
        return self.next_offset, ""


class KafkaDelivery(Delivery):
    __slots__ = ("_done", "_state", "_subscription", "offset", "record")
    inline_settle = True  # acks are bookkeeping; commits go out on their own timer

    def __init__(self, subscription: KafkaSubscription, state: PartitionState,
                 record: ConsumerRecord[bytes, bytes], count: int) -> None:
        headers = {name: (value or b"").decode("utf-8", "replace")
                   for name, value in record.headers} if record.headers else {}
        super().__init__(
            record.value or b"",
            key=record.key.decode("utf-8", "replace") if record.key is not None else None,
            headers=headers,
            id=f"{record.topic}/{record.partition}/{record.offset}",
            delivery_count=count,
            timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        )
        self._subscription = subscription
        self._state = state
        self.record = record
        self.offset = record.offset
        self._done = False

    async def ack(self) -> None:
        if self._done:
            return
        self._done = True
        if self._state.revoked:
            return  # the partition moved to another member, which will deliver it again
        self._state.open.pop(self.offset, None)
        self._state.handed.discard(self.offset)
        self._subscription._settled.set()
        self._subscription.request_commit()

    async def nack(self, delay: float) -> None:
        if self._done:
            return
        self._done = True
        if self._state.revoked or self._subscription.closing:
            return  # not committed: the group's next owner of the partition gets it
        self._state.handed.discard(self.offset)
        self._subscription.requeue(self, delay)
        self._subscription._settled.set()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, subscription: KafkaSubscription) -> None:
        self.subscription = subscription

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.subscription.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.subscription.partitions_assigned(assigned)


class KafkaSubscription(Subscription):
    def __init__(self, backend: KafkaBackend, spec: SubscribeSpec,
                 consumer: AIOKafkaConsumer) -> None:
        self.backend = backend
        self.spec = spec
        self.consumer = consumer
        self.listener = _Listener(self)
        self.partitions: dict[TopicPartition, PartitionState] = {}
        self.joined = asyncio.Event()
        self.closing = False
        self._closed = False
        self._commit_lock = asyncio.Lock()
        self._commit_failed = False
        self._order = itertools.count()
        self._requeued: list[tuple[float, int, KafkaDelivery]] = []
        self._settled = asyncio.Event()
        """Set whenever a delivery is acked or handed back (the revoke drain waits on it)."""
        self._commit_wanted = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None

    # -- rebalance ------------------------------------------------------------------------------

    async def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        counts: dict[TopicPartition, dict[int, int]] = {}
        if assigned and not self.closing:
            try:
                committed = await asyncio.wait_for(
                    self.backend.committed(self.spec.group, sorted(assigned)),
                    self.backend.request_timeout,
                )
                counts = {tp: decode_counts(om.metadata) for tp, om in committed.items()}
            except Exception as exc:  # counts are a courtesy; the offsets are the broker's
                log.debug("%s/%s: could not read commit metadata: %r",
                          self.spec.topic, self.spec.group, exc)
        for tp in assigned:
            self.partitions[tp] = PartitionState(tp, counts.get(tp, {}))
        log.debug("%s/%s: assigned %s", self.spec.topic, self.spec.group, sorted(assigned))
        self.joined.set()

    async def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        states = [self.partitions[tp] for tp in revoked if tp in self.partitions]
        self._requeued = [item for item in self._requeued if item[2]._state not in states]
        heapq.heapify(self._requeued)
        if not self.closing:
            # Let handlers of these partitions finish so their acks are committed here and the
            # next owner neither repeats them nor runs a key's message beside this member.
            deadline = time.monotonic() + self.backend.own.rebalance_drain
            while any(s.handed for s in states) and time.monotonic() < deadline:
                self._settled.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._settled.wait(), deadline - time.monotonic())
        with contextlib.suppress(Exception):
            await self.commit()
        for state in states:
            state.revoked = True
            self.partitions.pop(state.tp, None)
        log.debug("%s/%s: revoked %s", self.spec.topic, self.spec.group, sorted(revoked))

    # -- committing -----------------------------------------------------------------------------

    def request_commit(self) -> None:
        """An ack moved a commit point: commit soon, together with the acks that follow."""
        self._commit_wanted.set()
        if self._committer is None and not self.closing:
            self._committer = asyncio.create_task(self._commit_loop())

    async def _commit_loop(self) -> None:
        while True:
            await self._commit_wanted.wait()
            await asyncio.sleep(COMMIT_INTERVAL)
            self._commit_wanted.clear()
            try:
                await self.commit()
            except Exception as exc:  # fetch() retries a failed commit before the next batch
                log.warning("%s/%s: commit failed, will retry: %s",
                            self.spec.topic, self.spec.group, exc)

    async def commit(self) -> None:
        """Commit every partition's commit point that moved. Concurrent callers coalesce."""
        async with self._commit_lock:
            assignment = self.consumer.assignment()
            due: dict[TopicPartition, tuple[int, str]] = {}
            for tp, state in self.partitions.items():
                point = state.commit_point()
                if point is not None and point != state.committed and tp in assignment:
                    due[tp] = point
            if not due:
                return
            try:
                await asyncio.wait_for(self.consumer.commit(due), self.backend.request_timeout)
            except (ke.CommitFailedError, ke.IllegalStateError) as exc:
                # The group moved on: these partitions belong to another member now.
                log.info("%s/%s: commit refused after a rebalance, the new owner redelivers: %r",
                         self.spec.topic, self.spec.group, exc)
                return
            except Exception as exc:
                self._commit_failed = True
                raise translate(exc, "commit offsets") from exc
            self._commit_failed = False
            for tp, point in due.items():
                held = self.partitions.get(tp)
                if held is not None:
                    held.committed = point

    # -- fetching -------------------------------------------------------------------------------

    def requeue(self, delivery: KafkaDelivery, delay: float) -> None:
        again = KafkaDelivery(self, delivery._state, delivery.record,
                              delivery.delivery_count + 1)
        heapq.heappush(self._requeued, (time.monotonic() + delay, next(self._order), again))

    def _due_requeued(self, limit: int) -> list[Delivery]:
        now = time.monotonic()
        out: list[Delivery] = []
        while self._requeued and self._requeued[0][0] <= now and len(out) < limit:
            delivery = heapq.heappop(self._requeued)[2]
            if not delivery._state.revoked:
                delivery._state.open[delivery.offset] = delivery.delivery_count
                delivery._state.handed.add(delivery.offset)
                out.append(delivery)
        return out

    async def fetch(self, max_messages: int, timeout: float) -> Sequence[Delivery]:
        if self._closed:
            raise BusClosed("subscription is closed")
        if self._commit_failed:
            await self.commit()
        again = self._due_requeued(max_messages)
        if again:
            return again
        wait = timeout
        if self._requeued:
            wait = max(0.0, min(wait, self._requeued[0][0] - time.monotonic()))
        try:
            batches = await self.consumer.getmany(timeout_ms=int(wait * 1000),
                                                  max_records=max_messages)
        except ke.ConsumerStoppedError as exc:
            raise BusClosed("kafka consumer stopped") from exc
        except Exception as exc:
            raise translate(exc, f"fetch from {self.spec.topic}") from exc
        out: list[Delivery] = self._due_requeued(max_messages)
        for tp, records in batches.items():
            state = self.partitions.get(tp)
            if state is None:  # assigned before the listener ran: cannot happen, but be safe
                state = PartitionState(tp, {})
                self.partitions[tp] = state
            for record in records:
                count = state.earlier_counts.pop(record.offset, 0) + 1
                state.open[record.offset] = count
                state.handed.add(record.offset)
                state.next_offset = max(state.next_offset or 0, record.offset + 1)
                out.append(KafkaDelivery(self, state, record, count))
        return out

    async def close(self) -> None:
        if self._closed:
            return
        self.closing = True
        self.backend.forget(self)
        self._requeued.clear()
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
        try:
            await self.commit()
        except Exception as exc:
            log.warning("%s/%s: final commit failed, the group may redeliver: %s",
                        self.spec.topic, self.spec.group, exc)
        self._closed = True
        try:
            await self.consumer.stop()
        except Exception as exc:
            raise BrokerUnavailable(f"kafka: leaving group {self.spec.group}: {exc!r}") from exc
