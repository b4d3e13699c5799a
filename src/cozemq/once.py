"""Async set-up done once per key (a stream, a topic, a group), however many callers ask."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Once(Generic[K, V]):
    """``await once(key)`` runs ``make(key)`` the first time and returns its result ever after.

    Concurrent callers share one run; a failed run is forgotten, so the next caller tries
    again. ``done`` holds the results: check it first on a hot path (every send), where even
    an ``await`` of a finished future would cost a shield and a task wake-up.
    """

    def __init__(self, make: Callable[[K], Awaitable[V]]) -> None:
        self._make = make
        self._running: dict[K, asyncio.Future[V]] = {}
        self.done: dict[K, V] = {}

    async def __call__(self, key: K) -> V:
        if key in self.done:
            return self.done[key]
        running = self._running.get(key)
        if running is None:
            running = self._running[key] = asyncio.ensure_future(self._make(key))
        try:
            value = await asyncio.shield(running)  # one caller's cancel leaves the run going
        finally:
            if running.done() and self._running.get(key) is running:
                del self._running[key]
        self.done[key] = value
        return value

    def forget(self, key: K) -> None:
        """The thing set up is gone (a deleted topic): set it up again on the next call."""
        self.done.pop(key, None)
        self._running.pop(key, None)
