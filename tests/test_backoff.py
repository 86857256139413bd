"""The one backoff: grows from the first wait to the cap, jittered between half and all of it."""

from __future__ import annotations

import random

import pytest

from statspout.backoff import Backoff, backoff_delay


def test_waits_double_up_to_the_cap_with_equal_jitter():
    rng = random.Random(7)
    delays = [backoff_delay(n, first_s=0.5, max_s=8.0, rng=rng) for n in range(1, 10)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    # jittered: not all the capped waits are the same
    assert len(set(delays[4:])) > 1


def test_the_two_ends_of_the_jitter_are_reached():
    class Extreme(random.Random):
        def __init__(self, end: str) -> None:
            super().__init__()
            self.end = end

        def uniform(self, a: float, b: float) -> float:
            return a if self.end == "low" else b

    assert backoff_delay(3, first_s=1.0, max_s=30.0, rng=Extreme("low")) == 2.0
    assert backoff_delay(3, first_s=1.0, max_s=30.0, rng=Extreme("high")) == 4.0


def test_a_loop_failing_for_days_stays_at_the_cap():
    assert backoff_delay(10**6, first_s=0.5, max_s=30.0, rng=random.Random(1)) <= 30.0


def test_backoff_counts_failures_and_starts_over_after_a_success():
    backoff = Backoff(first_s=1.0, max_s=4.0, rng=random.Random(3))
    first = [backoff.next_delay() for _ in range(4)]
    assert backoff.attempts == 4
    assert 0.5 <= first[0] <= 1.0 and 2.0 <= first[3] <= 4.0
    backoff.reset()
    assert backoff.attempts == 0
    assert 0.5 <= backoff.next_delay() <= 1.0


@pytest.mark.parametrize("first_s, max_s", [(0.0, 1.0), (2.0, 1.0), (-1.0, 5.0)])
def test_nonsense_settings_are_refused(first_s, max_s):
    with pytest.raises(ValueError):
        Backoff(first_s, max_s)


def test_attempt_zero_is_refused():
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(0)
