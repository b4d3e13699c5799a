"""The consumer loop: the one place that decides what happens to a delivered message.

Returning from the handler acknowledges. Raising retries after a backoff (by the broker's
delayed redelivery where it has one and order does not matter, else by waiting here), and
after ``max_deliveries`` attempts the message goes to the dead-letter topic and is then
acknowledged. Nothing is skipped and nothing is dropped without a log line and a counter.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import headers as h
from .backend import Backend, Delivery, SubscribeSpec, Subscription
from .errors import InvalidArgument
from .message import Message, OutgoingMessage
from .retry import BackoffPolicy

log = logging.getLogger("cozemq.consumer")

FETCH_WAIT = 0.5
"""Seconds a fetch waits for the first message; also the longest close() waits for a fetch."""


class ConsumerHandler(Protocol):
    """Coze's ConsumerHandler: an object with ``async handle_message(msg)``."""

    async def handle_message(self, msg: Message) -> Any: ...


# An async callable, or a plain one run on the event loop (it must not block).
Handler = Callable[[Message], Any] | ConsumerHandler
HandlerFn = Callable[[Message], Any]
DeadLetterSender = Callable[[str, OutgoingMessage], Awaitable[None]]


def is_async_handler(fn: HandlerFn) -> bool:
    """Whether calling ``fn`` starts a coroutine (an async function, method or __call__)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )


class _Raised:
    """What an inline handler call raised, carried to the task that retries it."""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


def as_handler_fn(handler: object) -> HandlerFn:
    """Accept an async callable or a ConsumerHandler object; reject anything else up front."""
    method = getattr(handler, "handle_message", None)
    if callable(method):
        return method  # type: ignore[no-any-return]
    if callable(handler):
        return handler
    raise InvalidArgument(
        f"handler must be an async callable taking a Message or an object with "
        f"'async handle_message(msg)', got {type(handler).__name__}"
    )


@dataclass(frozen=True)
class ConsumerOptions:
    orderly: bool
    concurrency: int
    max_deliveries: int
    backoff: BackoffPolicy
    dead_letter_topic: str


@dataclass
class ConsumerStats:
    """Counters a consumer keeps; read them from ``ConsumerHandle.stats``."""

    received: int = 0
    acked: int = 0
    retried: int = 0
    dead_lettered: int = 0
    returned_on_close: int = 0
    settle_errors: int = 0
    fetch_errors: int = 0
    dropped: int = 0
    """Lost before delivery because this consumer fell behind (at-most-once brokers only)."""
    in_flight: int = 0
    max_in_flight: int = 0
    last_error: str | None = field(default=None, repr=False)


class Consumer:
    """One registered consumer: a fetch loop feeding handler tasks, bounded by concurrency."""

    def __init__(
        self,
        *,
        backend: Backend,
        subscription: Subscription,
        spec: SubscribeSpec,
        handler: HandlerFn,
        options: ConsumerOptions,
        dead_letter: DeadLetterSender,
    ) -> None:
        self.spec = spec
        self.options = options
        self.stats = ConsumerStats()
        self._subscription = subscription
        self._handler = handler
        self._dead_letter = dead_letter
        # Broker-side delayed redelivery frees the slot during the backoff, but would let a
        # later message with the same key overtake: orderly consumers wait here instead.
        self._broker_redelivers = (
            backend.capabilities.delayed_redelivery and not options.orderly
        )
        self._extend_every = backend.ack_extend_interval
        # A plain function is called right in the fetch loop when the delivery's settle
        # never waits for the broker: no hand-off to a worker, the cheapest path there is.
        self._inline = not options.orderly and not is_async_handler(handler)
        self._tasks: set[asyncio.Task[None]] = set()
        # Unordered consumers hand deliveries to `concurrency` long-lived workers: a task per
        # message would cost more than many handlers do.
        self._ready: asyncio.Queue[Delivery] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._drained = asyncio.Event()
        self._held: dict[Delivery, float] = {}
        self._key_tail: dict[str | None, asyncio.Future[None]] = {}
        self._slot_free = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._extender: asyncio.Task[None] | None = None

    def read_stats(self) -> ConsumerStats:
        """The live counters, with the client library's drop count brought up to date."""
        self.stats.dropped = self._subscription.dropped
        return self.stats

    def start(self) -> None:
        name = f"cozemq:{self.spec.topic}/{self.spec.group}"
        self._loop_task = asyncio.create_task(self._fetch_loop(), name=name)
        if not self.options.orderly:
            self._workers = [asyncio.create_task(self._worker(), name=f"{name}:worker")
                             for _ in range(self.options.concurrency)]
        if self._extend_every:
            self._extender = asyncio.create_task(self._extend_loop(), name=name + ":extend")
        if self._inline:
            self._subscription.deliver_directly(self._offer)

    # -- fetching ---------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        failures = 0
        while not self._stopping:
            free = self.options.concurrency - self.stats.in_flight
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                batch = await self._subscription.fetch(free, FETCH_WAIT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broker restart must not end the loop for good
                failures += 1
                self.stats.fetch_errors += 1
                self.stats.last_error = f"fetch: {exc!r}"
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("%s/%s: fetch failed (%d in a row): %r",
                                self.spec.topic, self.spec.group, failures, exc)
                await asyncio.sleep(min(2.0, 0.05 * 2 ** min(failures, 6)))
                continue
            failures = 0
            for delivery in batch:
                if self._inline and delivery.inline_settle and not self._stopping:
                    await self._handle_inline(delivery)
                else:
                    self._dispatch(delivery)

    def _offer(self, delivery: Delivery) -> bool:
        """A push backend's delivery, straight from its client's callback (see
        Subscription.deliver_directly): handled on the spot unless closing."""
        if self._stopping:
            return False
        rest = self._first_attempt(delivery)
        if rest is not None:
            self._continue_as_task(delivery, rest)
            return True
        try:
            delivery.ack_now()
        except Exception as exc:
            self._settle_failed("ack", exc)
        else:
            self.stats.acked += 1
        return True

    async def _handle_inline(self, delivery: Delivery) -> None:
        """First attempt of a plain handler, in the fetch loop."""
        rest = self._first_attempt(delivery)
        if rest is not None:
            self._continue_as_task(delivery, rest)
            return
        try:
            await delivery.ack()
        except Exception as exc:
            self._settle_failed("ack", exc)
            return
        self.stats.acked += 1

    def _first_attempt(self, delivery: Delivery) -> object:
        """Call a plain handler once. None means a plain success, to ack on the spot; anything
        else (what it raised, an awaitable it returned) continues as a task."""
        self.stats.received += 1
        try:
            result = self._handler(self._message(delivery, delivery.delivery_count))
        except Exception as exc:
            return _Raised(exc)
        if result is None or not inspect.isawaitable(result):
            return None
        return result

    def _continue_as_task(self, delivery: Delivery, first: object) -> None:
        self._begin(delivery)
        self._spawn(self._process(delivery, None, None, first=first))

    def _dispatch(self, delivery: Delivery) -> None:
        self.stats.received += 1
        if self._stopping:  # fetched while closing: hand it straight back
            self._spawn(self._give_back(delivery))
            return
        self._begin(delivery)
        if self.options.orderly:
            previous = self._key_tail.get(delivery.key)
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._key_tail[delivery.key] = turn
            self._spawn(self._process(delivery, previous, turn))
        else:
            self._ready.put_nowait(delivery)

    def _begin(self, delivery: Delivery) -> None:
        stats = self.stats
        stats.in_flight += 1
        if stats.in_flight > stats.max_in_flight:
            stats.max_in_flight = stats.in_flight
        if self._extend_every:
            self._held[delivery] = time.monotonic()

    async def _worker(self) -> None:
        ready = self._ready
        while True:
            delivery = await ready.get()
            await self._process(delivery, None, None)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- handling ---------------------------------------------------------------------------

    async def _process(
        self,
        delivery: Delivery,
        previous: asyncio.Future[None] | None,
        turn: asyncio.Future[None] | None,
        first: object = None,
    ) -> None:
        try:
            if previous is not None:
                await asyncio.shield(previous)
            await self._handle(delivery, first)
        except asyncio.CancelledError:
            # Cancelled by close() past its deadline: not acked, so it comes back.
            await self._give_back(delivery)
            raise
        finally:
            self._held.pop(delivery, None)
            self._release()
            if turn is not None:
                turn.set_result(None)
                if self._key_tail.get(delivery.key) is turn:
                    del self._key_tail[delivery.key]

    def _message(self, delivery: Delivery, attempt: int) -> Message:
        spec = self.spec
        return Message(spec.topic, spec.group, delivery.body, delivery.key, delivery.headers,
                       delivery.id, attempt, delivery.timestamp)

    async def _handle(self, delivery: Delivery, first: object = None) -> None:
        """Attempts until one succeeds or the message is dead-lettered. ``first`` is what
        an inline call of the first attempt already returned (an awaitable, or _Raised)."""
        attempt = delivery.delivery_count
        spec = self.spec
        while True:
            try:
                if first is None:
                    result = self._handler(self._message(delivery, attempt))
                else:
                    result, first = first, None
                    if isinstance(result, _Raised):
                        raise result.exc
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt >= self.options.max_deliveries:
                    await self._send_to_dead_letter(delivery, attempt, exc)
                    return
                delay = self.options.backoff.delay(attempt)
                self.stats.retried += 1
                log.info("%s/%s: handler failed on attempt %d of message %s, retry in %.3gs: %r",
                         spec.topic, spec.group, attempt, delivery.id, delay, exc)
                if self._broker_redelivers:
                    await self._settle(delivery.nack(delay), "nack")
                    return
                await asyncio.sleep(delay)
                attempt += 1
                continue
            await self._settle(delivery.ack(), "ack")
            self.stats.acked += 1
            return

    async def _send_to_dead_letter(self, delivery: Delivery, attempt: int, exc: Exception) -> None:
        spec = self.spec
        dead_headers = dict(delivery.headers)
        dead_headers.update({
            h.DLQ_ORIGINAL_TOPIC: spec.topic,
            h.DLQ_GROUP: spec.group,
            h.DLQ_ATTEMPTS: str(attempt),
            h.DLQ_ERROR: _one_line(f"{type(exc).__name__}: {exc}"),
            h.DLQ_ORIGINAL_ID: delivery.id,
        })
        outgoing = OutgoingMessage(body=delivery.body, key=delivery.key, headers=dead_headers)
        try:
            await self._dead_letter(self.options.dead_letter_topic, outgoing)
        except Exception as dlq_exc:
            # Never ack what did not reach the dead-letter topic: it comes back and tries again.
            log.error("%s/%s: dead-lettering message %s to %s failed, it will be redelivered: %r",
                      spec.topic, spec.group, delivery.id, self.options.dead_letter_topic, dlq_exc)
            await self._settle(delivery.nack(self.options.backoff.delay(attempt)), "nack")
            return
        log.error("%s/%s: message %s failed %d times, moved to %s: %r",
                  spec.topic, spec.group, delivery.id, attempt, self.options.dead_letter_topic, exc)
        self.stats.dead_lettered += 1
        await self._settle(delivery.ack(), "ack")

    def _release(self) -> None:
        self.stats.in_flight -= 1
        self._slot_free.set()
        if self.stats.in_flight == 0:
            self._drained.set()

    async def _give_back(self, delivery: Delivery) -> None:
        self.stats.returned_on_close += 1
        await self._settle(delivery.nack(0), "nack")

    async def _settle(self, operation: Awaitable[None], what: str) -> None:
        try:
            await operation
        except Exception as exc:
            self._settle_failed(what, exc)

    def _settle_failed(self, what: str, exc: Exception) -> None:
        # The broker will redeliver; counted as a possible duplicate.
        self.stats.settle_errors += 1
        self.stats.last_error = f"{what}: {exc!r}"
        log.warning("%s/%s: %s failed, the broker may redeliver: %r",
                    self.spec.topic, self.spec.group, what, exc)

    async def _extend_loop(self) -> None:
        assert self._extend_every
        while True:
            await asyncio.sleep(self._extend_every)
            due = time.monotonic() - self._extend_every / 2
            for delivery, since in list(self._held.items()):
                if since <= due:
                    await self._settle(delivery.extend(), "extend")

    # -- closing ----------------------------------------------------------------------------

    async def stop(self, timeout: float) -> None:
        """Stop fetching, give in-flight handlers ``timeout`` seconds, return the rest."""
        if self._stopping:
            return
        self._stopping = True
        self._slot_free.set()
        if self._loop_task is not None:
            # A fetch ends by itself within FETCH_WAIT; waiting for it strands no message.
            _, pending = await asyncio.wait({self._loop_task}, timeout=FETCH_WAIT + 5)
            for task in pending:
                task.cancel()
            if pending:  # bounded: a client library may swallow the cancel inside a fetch
                await asyncio.wait(pending, timeout=5)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self.stats.in_flight:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout)
        if self._tasks:  # orderly handlers, and messages being handed back
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - loop.time()))
        # Past the deadline: cancel what still runs (each gives its message back) and give
        # back what no worker started.
        running = [*self._workers, *self._tasks]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        while not self._ready.empty():
            await self._give_back(self._ready.get_nowait())
            self._release()
        if self._extender is not None:
            self._extender.cancel()
            await asyncio.gather(self._extender, return_exceptions=True)
        await self._subscription.close()


def _one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
