"""A blocking facade for code without an event loop (scripts, WSGI apps, Celery tasks).

The asyncio bus runs on a private event-loop thread; each call waits for its result there.
Handlers may be plain functions (run in a worker thread, so they may block) or coroutines.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

from .bus import ConsumerHandle, EventBus
from .errors import BusClosed, InvalidArgument
from .message import Message

T = TypeVar("T")


class BlockingEventBus:
    """``with BlockingEventBus.from_env() as bus: bus.send_message("t", b"x")``"""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cozemq-loop",
                                        daemon=True)
        self._thread.start()
        self._closed = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BlockingEventBus:
        return cls(EventBus.from_env(env))

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise InvalidArgument("a blocking cozemq call cannot be made from its own handler "
                                  "thread's event loop; use the async EventBus there")
        if self._closed:
            coro.close()
            raise BusClosed("this BlockingEventBus is closed; create a new one")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    @property
    def bus(self) -> EventBus:
        return self._bus

    def connect(self) -> None:
        self._run(self._bus.connect())

    def send_message(self, topic: str, body: bytes, *, key: str | None = None,
                     headers: Mapping[str, str] | None = None,
                     idempotency_key: str | None = None) -> None:
        self._run(self._bus.send_message(topic, body, key=key, headers=headers,
                                         idempotency_key=idempotency_key))

    def send_batch(self, topic: str, bodies: Iterable[bytes], *, key: str | None = None) -> None:
        self._run(self._bus.send_batch(topic, list(bodies), key=key))

    def producer(self, topic: str) -> BlockingProducer:
        return BlockingProducer(self, topic)

    def register_consumer(self, topic: str, group: str,
                          handler: Callable[[Message], Any], **options: Any) -> ConsumerHandle:
        """Like EventBus.register_consumer; a plain-function handler runs in a worker thread."""
        method = getattr(handler, "handle_message", None)
        target = method if callable(method) else handler
        if callable(target) and not inspect.iscoroutinefunction(target):
            sync_handler = target

            async def run_in_thread(message: Message) -> None:
                await asyncio.to_thread(sync_handler, message)

            return self._run(self._bus.register_consumer(topic, group, run_in_thread, **options))
        return self._run(self._bus.register_consumer(topic, group, handler, **options))

    def close(self, timeout: float | None = None) -> None:
        """Drain consumers and disconnect, then stop the loop thread. Idempotent."""
        if self._closed:
            return
        try:
            self._run(self._bus.close(timeout))
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> BlockingEventBus:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class BlockingProducer:
    def __init__(self, owner: BlockingEventBus, topic: str) -> None:
        self._owner = owner
        self._producer = owner.bus.producer(topic)

    def send(self, body: bytes, *, sharding_key: str | None = None,
             headers: Mapping[str, str] | None = None) -> None:
        self._owner._run(self._producer.send(body, sharding_key=sharding_key, headers=headers))

    def batch_send(self, bodies: Iterable[bytes], *, sharding_key: str | None = None) -> None:
        self._owner._run(self._producer.batch_send(list(bodies), sharding_key=sharding_key))
