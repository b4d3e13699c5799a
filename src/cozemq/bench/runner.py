"""Run one workload with one driver and measure it: rates, end-to-end latency from a timestamp
inside every payload (no sample dropped), loss, duplicates, reordering, client CPU per message."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .drivers import Driver
from .workload import HEADER_SIZE, Workload

log = logging.getLogger("cozemq.bench")

CLOSE_LIMIT = 30.0
"""Seconds a driver gets to close; a client that hangs on close must not hang the bench."""

_HEADER = struct.Struct(">HIQ")


def body(producer: int, seq: int, size: int) -> bytes:
    return _HEADER.pack(producer, seq, time.time_ns() // 1000) + b"\0" * (size - HEADER_SIZE)


class Recorder:
    """What one consumer group received."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.latencies_us: list[int] = []
        self.seen: set[tuple[int, int]] = set()
        self.duplicates = 0
        self.reordered = 0
        self._highest: dict[int, int] = {}
        self.first = 0.0
        self.last = 0.0
        self.done = asyncio.Event()

    def __call__(self, payload: bytes) -> None:
        now = time.time_ns() // 1000
        producer, seq, sent = _HEADER.unpack_from(payload)
        self.latencies_us.append(now - sent)
        item = (producer, seq)
        if item in self.seen:
            self.duplicates += 1
            return
        self.seen.add(item)
        if seq < self._highest.get(producer, -1):
            self.reordered += 1
        else:
            self._highest[producer] = seq
        self.last = time.perf_counter()
        if not self.first:
            self.first = self.last
        if len(self.seen) >= self.expected:
            self.done.set()


@dataclass
class Result:
    workload: str
    driver: str
    messages: int
    message_size: int
    publish_rate: float
    publish_mb_s: float
    consume_rate: float
    latency_ms: dict[str, float]
    lost: int
    duplicates: int
    reordered: int
    cpu_us_per_message: float
    elapsed_s: float
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentiles(values: list[int]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p99": 0.0, "p99.9": 0.0, "max": 0.0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    return {"p50": at(0.50), "p99": at(0.99), "p99.9": at(0.999), "max": ordered[-1] / 1000}


async def run_workload(
    driver: Driver,
    workload: Workload,
    *,
    on_progress: Callable[[int], None] | None = None,
    timeout: float | None = None,
) -> Result:
    w = workload
    topic = f"bench_{uuid.uuid4().hex[:10]}"
    per_producer = w.message_count // w.producers
    total = per_producer * w.producers
    recorders = [Recorder(total) for _ in range(w.groups)]
    await driver.start()
    try:
        await driver.ready(topic)
        for index, recorder in enumerate(recorders):
            for _ in range(w.consumers_per_group):
                await driver.subscribe(topic, f"bench_g{index}", recorder)
        await driver.begin()
        cpu_start, started = time.process_time(), time.perf_counter()
        sent = 0

        async def produce(producer: int) -> None:
            nonlocal sent
            interval = w.producers / w.rate if w.rate else 0.0
            began = time.perf_counter()
            for first in range(0, per_producer, w.batch_size):
                if interval:
                    delay = began + first * interval - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                count = min(w.batch_size, per_producer - first)
                if count == 1:
                    await driver.publish(topic, body(producer, first, w.message_size))
                else:
                    await driver.publish_batch(topic, [body(producer, first + i, w.message_size)
                                                       for i in range(count)])
                sent += count
                if on_progress:
                    on_progress(count)

        error = None
        try:
            await asyncio.wait_for(asyncio.gather(*(produce(p) for p in range(w.producers))),
                                   max(60.0, total / 50))
        except TimeoutError:
            error = f"sent only {sent} of {total} messages within {max(60.0, total / 50):.0f}s"
        published = time.perf_counter() - started
        limit = timeout if timeout is not None else max(30.0, total / 500)
        try:
            await asyncio.wait_for(asyncio.gather(*(r.done.wait() for r in recorders)), limit)
        except TimeoutError:
            error = error or f"not everything arrived within {limit:.0f}s"
        consumed = max((r.last for r in recorders), default=started) - started
        cpu = time.process_time() - cpu_start
    finally:
        try:
            await asyncio.wait_for(driver.close(), CLOSE_LIMIT)
        except TimeoutError:
            log.warning("%s: close did not finish within %ss", driver.name, CLOSE_LIMIT)
    received = sum(len(r.seen) for r in recorders)
    latencies = [v for r in recorders for v in r.latencies_us]
    return Result(
        workload=w.name,
        driver=driver.name,
        messages=total,
        message_size=w.message_size,
        publish_rate=total / published if published else 0.0,
        publish_mb_s=total * w.message_size / published / 1e6 if published else 0.0,
        consume_rate=received / consumed if consumed > 0 else 0.0,
        latency_ms=percentiles(latencies),
        lost=total * w.groups - received,
        duplicates=sum(r.duplicates for r in recorders),
        reordered=sum(r.reordered for r in recorders),
        cpu_us_per_message=cpu / max(1, total) * 1e6,
        elapsed_s=time.perf_counter() - started,
        error=error,
    )
