"""Counting instead of hoping: test messages carry a producer id and a sequence number, and a
Tally turns what a consumer saw into loss, duplicate and reordering counts."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..message import Message


def payload(producer: str, seq: int, size: int = 0) -> bytes:
    """``producer:seq``, padded with '.' to ``size`` bytes when asked."""
    head = f"{producer}:{seq}".encode()
    return head + b"." * max(0, size - len(head))


def parse(body: bytes) -> tuple[str, int]:
    producer, _, rest = body.partition(b":")
    return producer.decode(), int(rest.split(b".", 1)[0] or b"-1")


@dataclass
class Report:
    expected: int
    received: int
    lost: list[tuple[str, int]] = field(default_factory=list)
    duplicates: int = 0
    reordered: int = 0

    def __str__(self) -> str:
        lost = self.lost[:10]
        return (f"expected {self.expected}, received {self.received} deliveries: "
                f"{len(self.lost)} lost {lost}{'...' if len(self.lost) > 10 else ''}, "
                f"{self.duplicates} duplicates, {self.reordered} reordered")


class Tally:
    """What one consumer group received, in handling order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []
        self.messages: list[Message] = []
        self._changed = asyncio.Event()

    def record(self, message: Message) -> tuple[str, int]:
        item = parse(message.body)
        self.seen.append(item)
        self.messages.append(message)
        self._changed.set()
        return item

    async def __call__(self, message: Message) -> None:
        """Use the tally itself as a handler that always succeeds."""
        self.record(message)

    def unique(self) -> set[tuple[str, int]]:
        return set(self.seen)

    async def wait_for(self, count: int, timeout: float) -> None:
        """Until ``count`` distinct messages arrived; fails the test with a report on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.unique()) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s: {len(self.unique())} of {count} distinct "
                    f"messages arrived ({len(self.seen)} deliveries)"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                continue

    def report(self, expected: dict[str, int]) -> Report:
        """Compare with ``expected`` = {producer: number of messages sent, seq 0..n-1}."""
        got = self.unique()
        lost = [(p, s) for p, n in expected.items() for s in range(n) if (p, s) not in got]
        counts: dict[tuple[str, int], int] = defaultdict(int)
        for item in self.seen:
            counts[item] += 1
        duplicates = sum(c - 1 for c in counts.values())
        return Report(sum(expected.values()), len(self.seen), lost, duplicates,
                      reordered(self.seen))


def reordered(seen: Iterable[tuple[str, int]]) -> int:
    """How many first deliveries came after a higher sequence of the same producer."""
    highest: dict[str, int] = {}
    firsts: set[tuple[str, int]] = set()
    count = 0
    for producer, seq in seen:
        if (producer, seq) in firsts:
            continue
        firsts.add((producer, seq))
        if seq < highest.get(producer, -1):
            count += 1
        highest[producer] = max(seq, highest.get(producer, -1))
    return count


class KeyOrderCheck:
    """An orderly consumer's handler that records, per sharding key, the sequence numbers in
    the order it handled them, and every time two messages of one key were in it at once."""

    def __init__(self, *, work: float = 0.001, fail_first_attempt_every: int = 0) -> None:
        self.work = work
        self.fail_every = fail_first_attempt_every
        self.handled: dict[str, list[int]] = defaultdict(list)
        self.overlaps: list[str] = []
        self._busy: dict[str, int] = defaultdict(int)

    async def __call__(self, message: Message) -> None:
        key = message.key or ""
        self._busy[key] += 1
        if self._busy[key] > 1:
            self.overlaps.append(key)
        try:
            await asyncio.sleep(self.work)
            _, seq = parse(message.body)
            if self.fail_every and seq % self.fail_every == 0 and message.attempt == 1:
                raise RuntimeError("first attempt fails")
            self.handled[key].append(seq)
        finally:
            self._busy[key] -= 1

    def count(self) -> int:
        return sum(map(len, self.handled.values()))
