"""Counting holes in a numbered stream: the one rule for the router (each collector's ``seq``)
and the sink runtime (the router's per-route number).

Numbers come from the network, so nothing in them is trusted: a jump forward larger than
``max_jump`` is not believed to be loss (one forged number of 2^63 would otherwise set the gap
count to 9.2·10^18 for good) and counts as a restart of the numbering instead.
"""

from __future__ import annotations

import enum
from collections import OrderedDict

# A jump forward of more than this is counted as a restart, not as that many lost messages:
# ten million messages is hours of one collector's (or one route's) traffic at any rate seen.
MAX_PLAUSIBLE_JUMP = 10_000_000
# How many recent numbers a tracker remembers the fingerprints of, to tell a duplicate (the
# same message again) from a restarted numbering (another message under an old number).
DUPLICATES_REMEMBERED = 4096


class Seen(enum.Enum):
    FIRST = "first"  # the first number of the stream (or after reset())
    NEXT = "next"  # in order; a gap, if any, has been added to ``gaps``
    DUPLICATE = "duplicate"  # a message already seen: drop it
    RESTART = "restart"  # the sender started numbering again (or jumped implausibly far)


class SequenceTracker:
    """Follows one stream of numbers; ``gaps``, ``duplicates`` and ``restarts`` are counts
    (gaps and duplicates in numbers: a batch's items each have one)."""

    def __init__(self, max_jump: int = MAX_PLAUSIBLE_JUMP,
                 remembered: int = DUPLICATES_REMEMBERED) -> None:
        self._max_jump = max_jump
        self._remembered = remembered
        self.last: int | None = None
        self.gaps = 0
        self.duplicates = 0
        self.restarts = 0
        # number → fingerprint of the message that carried it, for the last ``remembered``.
        self._recent: OrderedDict[int, int] = OrderedDict()

    def observe(self, number: int, fingerprint: int | None = None, count: int = 1) -> Seen:
        """Take the next number, or the ``count`` numbers from it that one message (a batch)
        carries. With a ``fingerprint`` (a hash of the message), a number at or below the last
        one is a duplicate when it was seen with the same fingerprint, and a restart otherwise;
        without one, it is always a restart."""
        last = self.last
        if last is None:
            outcome = Seen.FIRST
        elif last < number <= last + self._max_jump:
            self.gaps += number - last - 1
            outcome = Seen.NEXT
        elif number <= last and fingerprint is not None \
                and self._recent.get(number) == fingerprint:
            self.duplicates += max(count, 1)
            return Seen.DUPLICATE
        else:
            self.restarts += 1
            self._recent.clear()
            outcome = Seen.RESTART
        self.last = number + max(count, 1) - 1
        if fingerprint is not None:
            self._recent[number] = fingerprint
            if len(self._recent) > self._remembered:
                self._recent.popitem(last=False)
        return outcome

    def reset(self) -> None:
        """Forget the stream's position (its counts stay): the next number starts afresh."""
        self.last = None
        self._recent.clear()
