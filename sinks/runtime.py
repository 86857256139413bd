"""The sink worker loop shared by every sink: subscribe, decode, dispatch, count, shut down.

No input ends the loop: a message that cannot be read is counted as ``malformed`` (and its
number, when readable, still advances the sequence, so it is not also a gap); the same message
again is dropped and counted as a ``duplicate``, and so is a collector's message handed on
already (a collector resends its last seconds to a new router: sinks/recent.py).

A batch (wire 1.2) is decoded once; each of its items is read, counted and checked for repeats
as a message of its own (a malformed item costs only itself), and the sink gets the messages of
one router message in one ``Sink.handle_batch`` call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import zmq

from statspout import bus, wire
from statspout.logs import ThrottledErrors
from statspout.sequence import Seen, SequenceTracker
from statspout.sinks.base import HandlingFailed, Sink
from statspout.sinks.checkpoint import Position
from statspout.sinks.recent import RecentMessages, message_key
from statspout.sinks.resume import RouteResume

log = logging.getLogger("statspout.sink")

# How often the loop wakes up with nothing to read: the cadence of flush() and of checking
# for a stop request.
POLL_MS = 500
FLUSH_EVERY_S = 1.0


@dataclass
class WorkerCounts:
    received: int = 0  # router messages (a batch is one)
    # Router messages that were batches (wire 1.2); every other count is of messages in them.
    batches: int = 0
    samples: int = 0
    events: int = 0
    # state and engine messages (schema 1.1); skipped_kinds: those the sink does not handle
    states: int = 0
    engines: int = 0
    skipped_kinds: int = 0
    malformed: int = 0
    sink_errors: int = 0
    # Messages the router numbered for our route that never arrived: lost between router and
    # sink (a full queue at the router, a reconnect), never filtered.
    gaps: int = 0
    # Messages that arrived again under a number already taken (dropped, not handed on). The
    # report's ``duplicates`` adds the collectors' messages handed on already (``recent``).
    duplicates: int = 0
    # Times the router's numbering started again (a router restart, or a jump too far ahead
    # to be loss: statspout/sequence.py).
    restarts: int = 0


class SinkWorker:
    """Runs one sink against the router's output until ``stop`` is set."""

    def __init__(
        self,
        sink: Sink,
        socket: zmq.Socket,
        *,
        report_interval: float = 60.0,
        resume: RouteResume | None = None,
    ) -> None:
        self._sink = sink
        # Replay and checkpoints (sinks/resume.py); None: holes are only counted, as gaps.
        self._resume = resume
        self._socket = socket
        self._report_interval = report_interval
        self.sequence = SequenceTracker()
        self._errors = ThrottledErrors(log)
        self._notices = ThrottledErrors(log)
        self.counts = WorkerCounts()
        self.recent = RecentMessages()

    def run(self, stop: threading.Event) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        next_flush = time.monotonic() + FLUSH_EVERY_S
        next_report = time.monotonic() + self._report_interval
        if self._resume is not None:
            self._resume.catch_up(self._replayed)
        try:
            while not stop.is_set():
                if poller.poll(POLL_MS):
                    # Drain what is queued before looking at the clock again.
                    while not stop.is_set():
                        try:
                            frames = self._socket.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self.handle_frames(frames)
                now = time.monotonic()
                if now >= next_flush:
                    self._guarded("flush", self._sink.flush)
                    self.checkpoint()
                    next_flush = now + FLUSH_EVERY_S
                if now >= next_report:
                    self.report()
                    next_report = now + self._report_interval
        finally:
            self._guarded("flush", self._sink.flush)
            self.checkpoint()
            self.report()

    def handle_frames(self, frames: list[bytes]) -> None:
        """One router message: [topic, sequence, payload]. Never raises."""
        self.counts.received += 1
        try:
            if len(frames) != 3:
                raise wire.MalformedMessage(f"{len(frames)} frames, expected 3")
            topic, sequence_frame, payload = frames
            sequence = bus.unpack_sequence(sequence_frame)
            run = bus.run_of(topic)
        except Exception as exc:  # any frames at all: nothing here may end the worker
            self._malformed(exc)
            return
        decoded = _decode(payload)
        # A batch holds one number per item. A payload that cannot be read holds one: its
        # number is taken all the same, so that it is counted as malformed and never as a gap.
        count = len(decoded.items) if isinstance(decoded, wire.Batch) else 1
        start = sequence
        if self._resume is not None and run is not None:
            # With the router's run id: holes are replayed, repeats dropped (sinks/resume.py).
            admitted = self._resume.admit(run, sequence, self._replayed, count)
            if admitted is None:
                return
            start = admitted
        elif not self._observe(sequence, payload, count):
            return
        # A router with run ids (bus version 1) is one whose collectors resend after its
        # restart: only then are a collector's repeats looked for.
        self._dispatch(decoded, payload, sequence, start,
                       run if self._resume is not None else None, drop_repeats=run is not None)

    def _observe(self, sequence: int, payload: bytes, count: int) -> bool:
        """Without replay: count gaps, restarts and duplicates; False for a duplicate."""
        seen = self.sequence.observe(sequence, hash(payload), count)
        self._update_sequence_counts()
        if seen is Seen.DUPLICATE:
            self._notices.log(logging.WARNING, "dropped a duplicate of router message %d "
                              "(%d duplicates so far)", sequence, self.counts.duplicates)
            return False
        if seen is Seen.RESTART:
            self._notices.log(logging.INFO, "router sequence restarted at %d (%d restarts so "
                              "far)", sequence, self.counts.restarts)
        return True

    def _replayed(self, position: Position, payload: bytes) -> int:
        """A message the router replayed: handled like a live one, but for a batch's items
        the route's position already covers. Returns the numbers it holds."""
        decoded = _decode(payload)
        count = len(decoded.items) if isinstance(decoded, wire.Batch) else 1
        had = self._resume.position if self._resume is not None else None
        start = position.seq
        if had is not None and had.run == position.run:
            start = max(start, had.seq + 1)
        self._dispatch(decoded, payload, position.seq, start, position.run,
                       drop_repeats=True)
        return count

    def _dispatch(self, decoded: wire.Message | wire.Batch | Exception, payload: bytes,
                  first: int, start: int, run: int | None, drop_repeats: bool) -> None:
        """Hand what a router message numbered from ``first`` holds to the sink, from number
        ``start`` on; with a ``run`` (replay on), note each number's fate for the checkpoint."""
        if isinstance(decoded, wire.Batch):
            self.counts.batches += 1
            read: list[tuple[object, Any]] = [
                (_decode(item), item) for item in decoded.items[start - first:]]
        else:
            read = [(decoded, payload)] if start == first else []
        handing: list[wire.Message] = []
        buffered = self._sink.buffered_kinds
        for number, (content, item) in enumerate(read, start):
            message = self._admitted(content, item, drop_repeats)
            if run is not None and self._resume is not None:
                # A malformed or repeated message is handed too, as settled: the checkpoint
                # moves past it. What the sink may still hold (its buffered_kinds) stays
                # unsettled until unsettled() says not.
                held = message is not None and message.kind in buffered
                self._resume.handed(Position(run, number), held)
            if message is not None:
                handing.append(message)
        if handing:
            self._hand(handing)

    def _admitted(self, decoded: object, item: object,
                  drop_repeats: bool) -> wire.Message | None:
        """The message to give the sink, counted by kind; None for a malformed one, a
        repeat, or a kind the sink does not handle (each counted)."""
        if isinstance(decoded, wire.Batch):  # a batch within a batch (decode_any let it by)
            decoded = wire.MalformedMessage("a batch's item is a batch")
        if not isinstance(decoded, wire.Message):
            self._malformed(decoded)
            return None
        message = decoded
        if drop_repeats and isinstance(item, bytes) \
                and self.recent.is_repeat(message_key(message, item)):
            self._notices.log(logging.INFO, "dropped a collector's message handed on already "
                              "(%s seq %d; %d so far): resent to a new router", message.host,
                              message.seq, self.recent.repeats)
            return None
        if isinstance(message, wire.ContainerStats):
            self.counts.samples += 1
        elif isinstance(message, wire.ContainerEvent):
            self.counts.events += 1
        elif isinstance(message, wire.ContainerState):
            self.counts.states += 1
            return message if self._handles("handle_state") else None
        else:
            self.counts.engines += 1
            return message if self._handles("handle_engine") else None
        return message

    def _handles(self, method: str) -> bool:
        """A kind a sink may leave to the base class's no-op: then counted as skipped."""
        if getattr(type(self._sink), method) is getattr(Sink, method):
            self.counts.skipped_kinds += 1
            return False
        return True

    def _hand(self, messages: list[wire.Message]) -> None:
        try:
            self._sink.handle_batch(messages)
        except HandlingFailed as failed:
            for method, exc in failed.failures:
                self._sink_error(method, exc)
        except Exception as exc:  # a sink's bug must not end the worker
            self._sink_error("handle_batch", exc)

    def checkpoint(self) -> None:
        """Save the route position the sink has settled (after a flush, and after close)."""
        if self._resume is not None:
            try:
                unsettled = self._sink.unsettled()
            except Exception as exc:  # a sink's bug must not end the worker; save nothing
                self._errors.error("sink %s.unsettled failed: %r", self._sink.name, exc)
                return
            self._resume.save(unsettled)

    def _malformed(self, reason: object) -> None:
        self.counts.malformed += 1
        self._errors.error(
            "skipped a malformed message (%d so far): %s", self.counts.malformed, reason
        )

    def _update_sequence_counts(self) -> None:
        self.counts.gaps = self.sequence.gaps
        self.counts.duplicates = self.sequence.duplicates
        self.counts.restarts = self.sequence.restarts

    def _guarded(self, what: str, call: Callable[..., object], *args: object) -> None:
        try:
            call(*args)
        except Exception as exc:  # a sink's bug must not end the worker
            self._sink_error(what, exc)

    def _sink_error(self, what: str, exc: Exception) -> None:
        self.counts.sink_errors += 1
        self._errors.error(
            "sink %s.%s failed (%d errors so far): %r",
            self._sink.name, what, self.counts.sink_errors, exc,
        )

    def report(self) -> None:
        figures = {**asdict(self.counts),
                   **(self._resume.counters() if self._resume is not None else {}),
                   **self._sink.counters()}
        figures["duplicates"] += self.recent.repeats
        log.info("%s: %s", self._sink.name, " ".join(f"{k}={v}" for k, v in figures.items()))


def _decode(payload: object) -> wire.Message | wire.Batch | Exception:
    """The message or batch a payload holds, or what is wrong with it."""
    try:
        return wire.decode_any(payload)  # type: ignore[arg-type]  # checked inside: any value
    except Exception as exc:  # decode raises only MalformedMessage; this is the last resort
        return exc
