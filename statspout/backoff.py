"""How long to wait before trying again: the one backoff every retry loop uses.

Exponential with "equal jitter" (half fixed, half random), capped: many processes cut off by one
outage do not retry in lockstep, and the wait still grows steadily from ``first_s`` up to
``max_s``. A loop keeps one ``Backoff``, asks it for the next wait after each failure and resets
it after a success; ``backoff_delay`` is the same formula for a loop that counts attempts itself.
"""

from __future__ import annotations

import random

DEFAULT_FIRST_S = 0.5
DEFAULT_MAX_S = 30.0
# 2**60 × any sensible first wait is past any cap: the exponent stops growing there, so that a
# loop failing for days never overflows a float.
_MAX_DOUBLINGS = 60


def backoff_delay(
    attempt: int,
    *,
    first_s: float = DEFAULT_FIRST_S,
    max_s: float = DEFAULT_MAX_S,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry): a random
    value between half and all of ``min(max_s, first_s × 2^(attempt − 1))``."""
    if attempt < 1:
        raise ValueError(f"attempt must be 1 or more, not {attempt}")
    ceiling = min(max_s, first_s * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS))
    uniform = (rng or random).uniform
    return ceiling / 2 + uniform(0, ceiling / 2)


class Backoff:
    """The waits of one retry loop: ``next_delay()`` after each failure, ``reset()`` after a
    success."""

    def __init__(
        self,
        first_s: float = DEFAULT_FIRST_S,
        max_s: float = DEFAULT_MAX_S,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < first_s <= max_s:
            raise ValueError(f"need 0 < first_s <= max_s, got {first_s} and {max_s}")
        self._first_s = first_s
        self._max_s = max_s
        self._rng = rng
        self.attempts = 0  # failures since the last success

    def next_delay(self) -> float:
        self.attempts += 1
        return backoff_delay(self.attempts, first_s=self._first_s, max_s=self._max_s,
                             rng=self._rng)

    def reset(self) -> None:
        self.attempts = 0
