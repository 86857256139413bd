"""The sink worker loop shared by every sink: subscribe, decode, dispatch, count, shut down."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass

import zmq

from statspout import bus, wire
from statspout.logs import ThrottledErrors
from statspout.sinks.base import Sink

log = logging.getLogger("statspout.sink")

# How often the loop wakes up with nothing to read: the cadence of flush() and of checking
# for a stop request.
POLL_MS = 500
FLUSH_EVERY_S = 1.0


@dataclass
class WorkerCounts:
    received: int = 0
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


class SinkWorker:
    """Runs one sink against the router's output until ``stop`` is set."""

    def __init__(
        self,
        sink: Sink,
        socket: zmq.Socket,
        *,
        report_interval: float = 60.0,
    ) -> None:
        self._sink = sink
        self._socket = socket
        self._report_interval = report_interval
        self._last_sequence: int | None = None
        self._errors = ThrottledErrors(log)
        self.counts = WorkerCounts()

    def run(self, stop: threading.Event) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        next_flush = time.monotonic() + FLUSH_EVERY_S
        next_report = time.monotonic() + self._report_interval
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
                    next_flush = now + FLUSH_EVERY_S
                if now >= next_report:
                    self.report()
                    next_report = now + self._report_interval
        finally:
            self._guarded("flush", self._sink.flush)
            self.report()

    def handle_frames(self, frames: list[bytes]) -> None:
        """One router message: [topic, sequence, payload]."""
        self.counts.received += 1
        try:
            topic, sequence_frame, payload = frames
            sequence = bus.unpack_sequence(sequence_frame)
            message = wire.decode(payload)
        except (ValueError, wire.MalformedMessage) as exc:
            self.counts.malformed += 1
            self._errors.error(
                "skipped a malformed message (%d so far): %s", self.counts.malformed, exc
            )
            return
        self._count_gap(sequence)
        if isinstance(message, wire.ContainerStats):
            self.counts.samples += 1
            self._guarded("write", self._sink.write, message)
        elif isinstance(message, wire.ContainerEvent):
            self.counts.events += 1
            self._guarded("handle_event", self._sink.handle_event, message)
        elif isinstance(message, wire.ContainerState):
            self.counts.states += 1
            self._dispatch_optional("handle_state", message)
        else:
            self.counts.engines += 1
            self._dispatch_optional("handle_engine", message)

    def _dispatch_optional(self, method: str, message: wire.Message) -> None:
        """A kind a sink may leave to the base class's no-op: then counted as skipped."""
        if getattr(type(self._sink), method) is getattr(Sink, method):
            self.counts.skipped_kinds += 1
            return
        self._guarded(method, getattr(self._sink, method), message)

    def _count_gap(self, sequence: int) -> None:
        last = self._last_sequence
        if last is not None:
            if sequence > last + 1:
                self.counts.gaps += sequence - last - 1
            elif sequence <= last:
                log.info("router sequence restarted at %d (router restart)", sequence)
        self._last_sequence = sequence

    def _guarded(self, what: str, call, *args) -> None:  # noqa: ANN001 - any sink method
        try:
            call(*args)
        except Exception as exc:  # a sink's bug must not end the worker
            self.counts.sink_errors += 1
            self._errors.error(
                "sink %s.%s failed (%d errors so far): %r",
                self._sink.name, what, self.counts.sink_errors, exc,
            )

    def report(self) -> None:
        figures = {**asdict(self.counts), **self._sink.counters()}
        log.info("%s: %s", self._sink.name, " ".join(f"{k}={v}" for k, v in figures.items()))
