"""Plain data that crosses the contract: what a handler receives and what a backend sends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery of a message to a consumer group.

    ``attempt`` is 1 on the first delivery and rises with each redelivery.
    ``id`` is stable across redeliveries of the same message; ``timestamp`` is the
    broker's time of the send where the broker records one, else the time of receipt.
    """

    topic: str
    group: str
    body: bytes
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    id: str = ""
    attempt: int = 1
    timestamp: datetime | None = None


@dataclass(slots=True)
class OutgoingMessage:
    """What the core hands a backend to publish; already validated, so backends only read
    it. (Not frozen: it is built on every send, and a frozen one costs 4x as much.)"""

    body: bytes
    key: str | None = None
    headers: Mapping[str, str] | None = None
    idempotency_key: str | None = None
