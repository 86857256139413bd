"""What the router keeps for sinks that come back: a bounded replay buffer per route, and the
start gate that holds the input until sinks can have subscribed.

A route's buffer holds the last messages sent on it, by sequence number, bounded by bytes and
by age (whichever limit is reached first evicts the oldest; evictions are counted in sequence
numbers, i.e. samples). A batch is held whole, under the numbers of its items. A sink that
missed messages asks for them by number (``statspout/replay.py``) and gets them from the one
that holds that number; what was evicted is beyond the window, and the sink counts it as lost.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from statspout.replay import PAGE_BYTES, PAGE_MESSAGES, BadReplay, ReplayAnswer, ReplayRequest

log = logging.getLogger("statspout.router")

DEFAULT_REPLAY_BYTES = 64 * 1024 * 1024
DEFAULT_REPLAY_SECONDS = 600.0
DEFAULT_START_GRACE_S = 5.0
# What one held message costs besides its payload (the list slot, the tuple, the int and float).
ENTRY_OVERHEAD_BYTES = 120


@dataclass
class ReplayLimits:
    max_bytes: int = DEFAULT_REPLAY_BYTES  # per route
    max_seconds: float = DEFAULT_REPLAY_SECONDS


class RouteBuffer:
    """The messages last sent on one route, oldest first. A message holds ``count`` sequence
    numbers from its own (a batch: one per item); the numbers held have no holes."""

    def __init__(self, limits: ReplayLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        # A list with a moving head: appending and evicting are O(1), and the message holding
        # a sequence number is found by bisection. The evicted front is cut off when it is
        # half the list. Entries: (first number, count, payload, time sent).
        self._entries: list[tuple[int, int, bytes, float]] = []
        self._head = 0
        self.bytes = 0
        self.evicted = 0  # sequence numbers (samples), not messages

    def __len__(self) -> int:
        """How many sequence numbers are held."""
        newest = self.newest
        return 0 if newest is None else newest - self._entries[self._head][0] + 1

    @property
    def oldest(self) -> int | None:
        return self._entries[self._head][0] if self._head < len(self._entries) else None

    @property
    def newest(self) -> int | None:
        if self._head >= len(self._entries):
            return None
        first, count, _, _ = self._entries[-1]
        return first + count - 1

    def append(self, sequence: int, payload: bytes, count: int = 1) -> None:
        newest = self.newest
        if newest is not None and sequence != newest + 1:
            # Numbers start again only with a new router run, i.e. a new buffer; be safe anyway.
            self.evicted += len(self)
            self._entries, self._head, self.bytes = [], 0, 0
        now = self._clock()
        self._entries.append((sequence, count, payload, now))
        self.bytes += len(payload) + ENTRY_OVERHEAD_BYTES
        while self.bytes > self._limits.max_bytes and self._head < len(self._entries):
            self._evict_one()
        self.expire(now)

    def expire(self, now: float | None = None) -> None:
        """Evict what is older than the age limit."""
        limit = (self._clock() if now is None else now) - self._limits.max_seconds
        while self._head < len(self._entries) and self._entries[self._head][3] < limit:
            self._evict_one()

    def page(self, first: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` messages (and PAGE_BYTES), from the one holding ``first`` (or the
        first held after it), as (its first number, payload)."""
        newest = self.newest
        if newest is None or first > newest:
            return []
        start = max(self._head, bisect.bisect_right(
            self._entries, first, lo=self._head, key=lambda entry: entry[0]) - 1)
        out: list[tuple[int, bytes]] = []
        size = 0
        for sequence, _, payload, _ in self._entries[start:start + min(limit, PAGE_MESSAGES)]:
            if out and size + len(payload) > PAGE_BYTES:
                break
            out.append((sequence, payload))
            size += len(payload)
        return out

    def _evict_one(self) -> None:
        _, count, payload, _ = self._entries[self._head]
        self._head += 1
        self.bytes -= len(payload) + ENTRY_OVERHEAD_BYTES
        self.evicted += count
        if self._head * 2 >= len(self._entries):
            del self._entries[:self._head]
            self._head = 0


class ReplayStore:
    """One RouteBuffer per route, and the answers to the replay socket."""

    def __init__(self, run_id: int, limits: ReplayLimits,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.run_id = run_id
        self._limits = limits
        self._clock = clock
        self._routes: dict[str, RouteBuffer] = {}
        self.requests = 0
        self.bad_requests = 0
        self.replayed = 0  # messages (a batch: one) sent in answers

    def record(self, route: str, sequence: int, payload: bytes, count: int = 1) -> None:
        """Keep a message sent on ``route`` numbered ``sequence`` (a batch of ``count`` items:
        numbered ``sequence`` … ``sequence + count - 1``)."""
        buffer = self._routes.get(route)
        if buffer is None:
            buffer = self._routes[route] = RouteBuffer(self._limits, self._clock)
        buffer.append(sequence, payload, count)

    def expire(self) -> None:
        now = self._clock()
        for buffer in self._routes.values():
            buffer.expire(now)

    def answer(self, frames: list[bytes], head_of: Callable[[str], int]) -> list[bytes]:
        """The answer frames to one request; a bad request gets an answer naming the error."""
        self.requests += 1
        try:
            request = ReplayRequest.decode(frames)
        except BadReplay as exc:
            self.bad_requests += 1
            return self.refuse(str(exc))
        buffer = self._routes.get(request.route)
        if buffer is None:
            return ReplayAnswer(self.run_id, None, head_of(request.route), []).encode()
        buffer.expire()
        messages = buffer.page(request.first, request.limit)
        self.replayed += len(messages)
        return ReplayAnswer(self.run_id, buffer.oldest, head_of(request.route),
                            messages).encode()

    def refuse(self, reason: str) -> list[bytes]:
        return ReplayAnswer(self.run_id, None, 0, [], error=reason).encode()

    def summary(self) -> str:
        """One line for the periodic report."""
        routes = ", ".join(f"{route}: held={len(b)} oldest={b.oldest} evicted={b.evicted}"
                           for route, b in sorted(self._routes.items()))
        return f"run={self.run_id:016x} {routes or 'none held'} replayed={self.replayed}"

    def status(self) -> dict[str, Any]:
        return {
            "run_id": f"{self.run_id:016x}",
            "max_bytes_per_route": self._limits.max_bytes,
            "max_seconds": self._limits.max_seconds,
            "requests": self.requests,
            "bad_requests": self.bad_requests,
            "replayed": self.replayed,
            "routes": {
                route: {"messages": len(b), "bytes": b.bytes, "oldest_seq": b.oldest,
                        "newest_seq": b.newest, "evicted": b.evicted}
                for route, b in sorted(self._routes.items())
            },
        }


class StartGate:
    """Holds the router's input after a start until a sink subscribes or the grace passes.

    Collectors queue meanwhile in their own bounded queue (their --hwm), so what they sent
    while the router was away is forwarded only once sinks can receive it. Sinks that subscribe
    later get the start of the run by replay.
    """

    def __init__(self, grace: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._deadline = self._started + grace
        self.opened_by: str | None = None if grace > 0 else "no grace"
        self.held_seconds = 0.0

    @property
    def is_open(self) -> bool:
        return self.opened_by is not None

    def subscribed(self) -> None:
        self._open("a subscription")

    def check(self) -> bool:
        """Open when the grace has passed; True when open."""
        if not self.is_open and self._clock() >= self._deadline:
            self._open("the grace period")
        return self.is_open

    def seconds_left(self) -> float:
        return max(0.0, self._deadline - self._clock())

    def _open(self, why: str) -> None:
        if self.is_open:
            return
        self.opened_by = why
        self.held_seconds = round(self._clock() - self._started, 3)
        log.info("input released after %.1f s by %s", self.held_seconds, why)

    def status(self) -> dict[str, Any]:
        return {"open": self.is_open, "opened_by": self.opened_by,
                "held_seconds": self.held_seconds}
