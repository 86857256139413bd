"""The router loop: read collectors' payloads, choose routes, forward the bytes unchanged."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass

import zmq

from statspout import bus, wire
from statspout.router.routing import RouteTable

log = logging.getLogger("statspout.router")

POLL_MS = 500


@dataclass
class CollectorCounts:
    """What one collector (by host name) sent us."""

    messages: int = 0
    # Messages the collector numbered that never reached us: dropped at its queue or lost
    # while the router was away.
    gaps: int = 0
    last_seq: int | None = None


class Router:
    def __init__(
        self,
        input_socket: zmq.Socket,
        output_socket: zmq.Socket,
        routes: RouteTable,
        *,
        report_interval: float = 60.0,
    ) -> None:
        self._input = input_socket
        self._output = output_socket
        self.routes = routes
        self._report_interval = report_interval
        self._last_error_log = 0.0
        self.collectors: dict[str, CollectorCounts] = {}
        self.malformed = 0
        self.filtered = 0
        # The router numbers what it sends on each route itself, so that a sink's gap means loss.
        self.route_sequences: Counter[str] = Counter()

    def run(self, stop: threading.Event) -> None:
        next_report = time.monotonic() + self._report_interval
        while not stop.is_set():
            if self._input.poll(POLL_MS):
                while not stop.is_set():
                    try:
                        frames = self._input.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.handle(frames)
            if time.monotonic() >= next_report:
                self.report()
                next_report = time.monotonic() + self._report_interval
        self.report()

    def handle(self, frames: list[bytes]) -> None:
        if len(frames) != 1:
            self._malformed(f"{len(frames)} frames, expected 1")
            return
        payload = frames[0]
        try:
            message = wire.decode(payload)
        except wire.MalformedMessage as exc:
            self._malformed(str(exc))
            return
        self._count_input(message)
        routes = self.routes.routes_for(message)
        if not routes:
            self.filtered += 1
        for route in routes:
            self.route_sequences[route] += 1
            self._output.send_multipart(
                [bus.topic_for(route), bus.pack_sequence(self.route_sequences[route]), payload]
            )

    def _count_input(self, message: wire.Message) -> None:
        counts = self.collectors.setdefault(message.host, CollectorCounts())
        counts.messages += 1
        last = counts.last_seq
        if last is not None:
            if message.seq > last + 1:
                counts.gaps += message.seq - last - 1
            elif message.seq <= last:
                log.info("collector %s restarted its sequence at %d", message.host, message.seq)
        counts.last_seq = message.seq

    def _malformed(self, reason: str) -> None:
        self.malformed += 1
        now = time.monotonic()
        if now - self._last_error_log >= 1.0:  # the counter has the full number
            self._last_error_log = now
            log.error("skipped a malformed message (%d so far): %s", self.malformed, reason)

    def report(self) -> None:
        hosts = ", ".join(
            f"{host}: in={c.messages} gaps={c.gaps}" for host, c in sorted(self.collectors.items())
        )
        routes = ", ".join(f"{r}: out={n}" for r, n in sorted(self.route_sequences.items()))
        log.info(
            "collectors [%s] routes [%s] filtered=%d malformed=%d",
            hosts or "none", routes or "none", self.filtered, self.malformed,
        )
