"""Backoff between redeliveries."""

import pytest

from cozemq import Backoff, FixedDelays, InvalidArgument
from cozemq.retry import as_backoff


def test_exponential_backoff_doubles_up_to_the_cap() -> None:
    backoff = Backoff(initial=0.5, multiplier=2, maximum=3)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_only_shortens_the_delay() -> None:
    backoff = Backoff(initial=1, jitter=0.5)
    assert all(0.5 <= backoff.delay(1) <= 1 for _ in range(100))


def test_a_number_or_a_list_is_accepted() -> None:
    assert as_backoff(0.2).delay(5) == 0.2
    delays = as_backoff([0.1, 1, 10])
    assert isinstance(delays, FixedDelays)
    assert [delays.delay(n) for n in range(1, 5)] == [0.1, 1, 10, 10]


@pytest.mark.parametrize("bad", [-1, [], ["x"], "1s", True])
def test_bad_backoff_is_refused(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="retry_backoff"):
        as_backoff(bad)  # type: ignore[arg-type]
