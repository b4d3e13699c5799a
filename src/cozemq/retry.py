"""Backoff between redeliveries of a message whose handler failed."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InvalidArgument


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``initial * multiplier**(attempt-1)``, capped at ``maximum``.

    ``jitter`` spreads retries of many messages that failed together: each delay is drawn
    from [delay * (1 - jitter), delay].
    """

    initial: float = 1.0
    multiplier: float = 2.0
    maximum: float = 60.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0:
            raise InvalidArgument("retry_backoff: delays must be >= 0 seconds")
        if self.multiplier < 1:
            raise InvalidArgument("retry_backoff: multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise InvalidArgument("retry_backoff: jitter must be between 0 and 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed delivery number ``attempt`` (1-based)."""
        base = min(self.maximum, self.initial * self.multiplier ** max(0, attempt - 1))
        if self.jitter:
            base *= 1 - random.random() * self.jitter
        return base


@dataclass(frozen=True)
class FixedDelays:
    """Explicit delays after the 1st, 2nd, ... failure; the last one repeats."""

    delays: tuple[float, ...]

    def delay(self, attempt: int) -> float:
        return self.delays[min(attempt, len(self.delays)) - 1]


BackoffPolicy = Backoff | FixedDelays


def as_backoff(value: float | Sequence[float] | BackoffPolicy) -> BackoffPolicy:
    """Accept a Backoff, a number of seconds (fixed delay) or a sequence of delays."""
    if isinstance(value, Backoff | FixedDelays):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise InvalidArgument(f"retry_backoff must be >= 0 seconds, got {value}")
        return FixedDelays((float(value),))
    if isinstance(value, Sequence) and value and all(
        isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        return FixedDelays(tuple(float(v) for v in value))
    raise InvalidArgument(
        "retry_backoff must be a Backoff, a number of seconds >= 0 or a non-empty sequence "
        f"of them, got {value!r}"
    )
