"""Resuming a route without holes: replay what the sink missed, drop what it already has.

The ZeroMQ guide's late-joiner pattern (Clone: subscribe first, then fetch the state, then apply
only updates newer than it): the worker is subscribed before it asks the router's replay socket
(``statspout/replay.py``) for the messages after its checkpoint; live messages it then reads
that replay already delivered are dropped and counted (``duplicates``). A batch (wire 1.2)
holds one number per item: the counts here are in numbers, i.e. samples. While running,
a hole in the route's numbers (the sink's queue at the router overflowed, a reconnect) is
filled the same way before the message after it is handled, and a new router run id in the
topic (the router restarted and numbers from 1 again) fetches the new run from its start.

What the router no longer holds (beyond its replay window), or what cannot be fetched because
the replay socket does not answer, is counted exactly in ``lost_beyond_replay``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import zmq

from statspout.logs import ThrottledErrors
from statspout.replay import BadReplay, ReplayAnswer, ReplayRequest
from statspout.sinks.checkpoint import CheckpointFile, Position, SettledMark

log = logging.getLogger("statspout.sink")

REPLAY_TIMEOUT_MS = 3000
# After a request without an answer, holes are counted lost without asking for this long: a
# router without a replay socket (older version) must not stall the worker on every hole.
RETRY_AFTER_S = 10.0

# Hands a replayed payload to the sink: given the position of the payload's first number, it
# returns how many numbers the payload holds (a batch: its items; None: one). While it runs,
# ``RouteResume.position`` is still the last number handed before it: a batch's items at or
# below it were had already (a checkpoint may fall inside a batch) and are skipped.
Deliver = Callable[[Position, bytes], int | None]


class ReplayClient:
    """Asks the router's replay socket for one page; None when it does not answer in time."""

    def __init__(self, make_socket: Callable[[], zmq.Socket],
                 timeout_ms: int = REPLAY_TIMEOUT_MS) -> None:
        self._make_socket = make_socket
        self._timeout_ms = timeout_ms
        self._socket: zmq.Socket | None = None
        self._quiet_until = 0.0
        self._errors = ThrottledErrors(log)
        self.failures = 0

    def fetch(self, route: str, first: int) -> ReplayAnswer | None:
        if time.monotonic() < self._quiet_until:
            return None
        if self._socket is None:
            self._socket = self._make_socket()
        try:
            self._socket.send(ReplayRequest(route, first).encode())
            if self._socket.poll(self._timeout_ms):
                answer = ReplayAnswer.decode(self._socket.recv_multipart())
                if answer.error is None:
                    return answer
                problem = f"the router refused the request: {answer.error}"
            else:
                problem = f"no answer in {self._timeout_ms} ms"
        except (BadReplay, ValueError, zmq.ZMQError) as exc:
            problem = f"bad answer: {exc}"
        # A REQ socket without its answer cannot send again: start over with a new one.
        self.close()
        self.failures += 1
        self._quiet_until = time.monotonic() + RETRY_AFTER_S
        self._errors.error("replay unavailable (%d failures so far; asking again in %g s): %s",
                           self.failures, RETRY_AFTER_S, problem)
        return None

    def wake(self) -> None:
        """Ask again at the next hole, quiet period or not: the router has just restarted."""
        self._quiet_until = 0.0

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None


class RouteResume:
    """The position of a sink in its route, and what keeps it free of holes and repeats."""

    def __init__(self, route: str, client: ReplayClient | None,
                 checkpoint: CheckpointFile | None) -> None:
        self._route = route
        self._client = client
        self._checkpoint = checkpoint
        self._mark = SettledMark()
        self._errors = ThrottledErrors(log)
        self.position: Position | None = None  # the last message handed to the sink
        self.replayed = 0
        self.duplicates = 0
        self.lost_beyond_replay = 0
        self.router_runs_seen = 0  # router run ids changed under us (router restarts)
        self.checkpoint_errors = 0

    def catch_up(self, deliver: Deliver) -> None:
        """At start: fetch everything after the checkpoint (all the router's current run holds
        when the checkpoint is of another run). Without a checkpoint, start with the live
        stream."""
        saved = self._checkpoint.load() if self._checkpoint is not None else None
        if saved is None:
            return
        log.info("resuming route %r after router run %016x seq %d", self._route, saved.run,
                 saved.seq)
        self.position = saved
        self._fill(deliver, until=None)

    def admit(self, run: int, seq: int, deliver: Deliver, count: int = 1) -> int | None:
        """A live message numbered ``seq`` … ``seq + count - 1`` (a batch: one per item).
        Returns the first of its numbers to hand to the sink (after any hole before it was
        filled through ``deliver``); None when all were had already (dropped and counted)."""
        position = self.position
        if position is None:
            position = self.position = Position(run, seq - 1)  # a new sink starts live
        elif run != position.run:
            position = self._new_run(position, run)
        last = seq + max(count, 1) - 1
        if last <= position.seq:
            self.duplicates += last - seq + 1
            return None
        if seq > position.seq + 1:
            self._fill(deliver, until=seq - 1)
            filled = self.position
            if filled is not None and filled.run == run and filled.seq < seq - 1:
                self._lose(seq - 1 - filled.seq)
        filled = self.position
        start = seq
        if filled is not None and filled.run == run and filled.seq >= seq:
            start = filled.seq + 1  # the first ones were had already (a checkpoint within)
            self.duplicates += min(start, last + 1) - seq
            if start > last:
                return None
        self.position = Position(run, last)
        return start

    @property
    def checkpoint_path(self) -> str | None:
        return None if self._checkpoint is None else str(self._checkpoint.path)

    def handed(self, position: Position, is_sample: bool) -> None:
        self._mark.handed(position, is_sample)

    def save(self, unsettled: int) -> None:
        """Checkpoint the position before the sink's ``unsettled`` latest samples."""
        if self._checkpoint is None:
            return
        settled = self._mark.settled(unsettled)
        if settled is None:
            return
        try:
            self._checkpoint.save(settled)
        except OSError as exc:
            self.checkpoint_errors += 1
            self._errors.error("cannot save the checkpoint %s (%d failures so far): %s",
                               self._checkpoint.path, self.checkpoint_errors, exc)

    def counters(self) -> dict[str, Any]:
        return {"replayed": self.replayed, "duplicates": self.duplicates,
                "lost_beyond_replay": self.lost_beyond_replay,
                "router_runs_seen": self.router_runs_seen,
                "checkpoint_errors": self.checkpoint_errors}

    def _new_run(self, old: Position, run: int) -> Position:
        log.info("route %r: the router runs as %016x now (was %016x): it restarted; fetching "
                 "the new run from its start", self._route, run, old.run)
        self.router_runs_seen += 1
        if self._client is not None:
            self._client.wake()
        self.position = Position(run, 0)
        return self.position

    def _lose(self, count: int) -> None:
        self.lost_beyond_replay += count
        self._errors.error("route %r: %d messages could not be replayed (%d so far)",
                           self._route, count, self.lost_beyond_replay)

    def _fill(self, deliver: Deliver, until: int | None) -> None:
        """Fetch pages after the position up to ``until`` (None: up to the router's head)."""
        position = self.position
        assert position is not None  # set by catch_up or admit before they fill
        while until is None or position.seq < until:
            answer = self._client.fetch(self._route, position.seq + 1) if self._client \
                else None
            if answer is None:
                return
            if answer.run != position.run:
                if until is not None:
                    return  # the router restarted after the message that showed the hole
                position = self._new_run(position, answer.run)  # since the checkpoint
                continue
            wanted = [(s, p) for s, p in answer.messages if until is None or s <= until]
            if not wanted:
                # Nothing held from the position on: the rest up to the head was evicted.
                end = answer.head if until is None else min(until, answer.head)
                if end > position.seq:
                    self._lose(end - position.seq)
                    self.position = Position(answer.run, end)
                return
            if wanted[0][0] > position.seq + 1:
                self._lose(wanted[0][0] - position.seq - 1)
            for seq, payload in wanted:
                end = seq + max(deliver(Position(answer.run, seq), payload) or 1, 1) - 1
                self.replayed += max(0, end - max(seq, position.seq + 1) + 1)
                position = self.position = Position(answer.run, max(end, position.seq))
            if until is None and position.seq >= answer.head:
                return
