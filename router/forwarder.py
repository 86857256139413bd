"""The router loop: read collectors' payloads, choose routes, forward the bytes unchanged.

Everything the loop touches (its sockets, the route table, the counters) belongs to the one
thread that runs it; signal handlers only set events that the loop looks at between polls.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import zmq

from statspout import bus, wire
from statspout.logs import ThrottledErrors
from statspout.router.replay import ReplayStore, StartGate
from statspout.router.routing import RouteTable

log = logging.getLogger("statspout.router")

POLL_MS = 500
UNKNOWN_HOST = "(unreadable)"  # where malformed messages without a readable host are counted


@dataclass
class CollectorCounts:
    """What one collector (by host name) sent us."""

    messages: int = 0
    # Messages the collector numbered that never reached us: dropped at its queue or lost
    # while the router was away.
    gaps: int = 0
    malformed: int = 0
    last_seq: int | None = None
    last_seen: float | None = None  # time.monotonic() of the last message


class Router:
    def __init__(
        self,
        input_socket: zmq.Socket,
        output_socket: zmq.Socket,
        routes: RouteTable,
        *,
        report_interval: float = 60.0,
        control_socket: zmq.Socket | None = None,
        is_authorized: Callable[[str | None], bool] | None = None,
        run_id: int | None = None,
        replay: ReplayStore | None = None,
        replay_socket: zmq.Socket | None = None,
        gate: StartGate | None = None,
    ) -> None:
        self._input = input_socket
        self._output = output_socket
        self._control = control_socket
        # With CURVE: asked for the sender of every message, so that a key removed from the
        # authorized folder stops a link that was authenticated before the removal.
        self._is_authorized = is_authorized
        self.routes = routes
        self._report_interval = report_interval
        self._errors = ThrottledErrors(log)
        self._started = time.monotonic()
        self.collectors: dict[str, CollectorCounts] = {}
        self.malformed = 0
        self.filtered = 0
        self.rejected = 0  # messages from peers whose key is no longer authorized
        # The router numbers what it sends on each route itself, so that a sink's gap means loss.
        self.route_sequences: Counter[str] = Counter()
        self.reloads = 0
        # Restarts and replay (router/replay.py): the run id in every topic frame tells sinks
        # that numbering started again; the gate holds the input until sinks can listen.
        self.run_id = run_id if run_id is not None else int.from_bytes(os.urandom(8), "big")
        self._topics: dict[str, bytes] = {}
        self._replay = replay
        self._replay_socket = replay_socket
        self._gate = gate if gate is not None else StartGate(0)

    def run(
        self,
        stop: threading.Event,
        reload_requested: threading.Event | None = None,
        reload: Callable[[Router], None] | None = None,
    ) -> None:
        """Route until ``stop`` is set; when ``reload_requested`` is set, call ``reload`` from
        this thread (it may swap the route table or the output socket)."""
        poller = self._poller()
        next_report = time.monotonic() + self._report_interval
        while not stop.is_set():
            held = not self._gate.is_open
            timeout = min(POLL_MS, self._gate.seconds_left() * 1000 + 1) if held else POLL_MS
            ready = dict(poller.poll(timeout))
            if self._output in ready:
                self._read_subscriptions()
            if self._input in ready:
                self._drain_input(stop)
            if self._replay_socket is not None and self._replay_socket in ready:
                self._answer_replay()
            if self._control is not None and self._control in ready:
                self._answer_control()
            if reload_requested is not None and reload_requested.is_set():
                reload_requested.clear()
                if reload is not None:
                    reload(self)
                    self.reloads += 1
                    poller = self._poller()  # the output socket may be a new one
            if held and self._gate.check():
                poller = self._poller()
            if self._replay is not None:
                self._replay.expire()
            if time.monotonic() >= next_report:
                self.report()
                next_report = time.monotonic() + self._report_interval
        self.report()

    def _poller(self) -> zmq.Poller:
        """The sockets to wait on; the input only once the start gate is open."""
        poller = zmq.Poller()
        if self._gate.is_open:
            poller.register(self._input, zmq.POLLIN)
        poller.register(self._output, zmq.POLLIN)  # XPUB: the sinks' subscriptions
        for sock in (self._replay_socket, self._control):
            if sock is not None:
                poller.register(sock, zmq.POLLIN)
        return poller

    def _read_subscriptions(self) -> None:
        while True:
            try:
                frame = self._output.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:  # a PUB output (tests, benchmarks) cannot be read
                return
            if frame[:1] == b"\x01":
                self._gate.subscribed()

    def _answer_replay(self) -> None:
        sock, replay = self._replay_socket, self._replay
        assert sock is not None and replay is not None  # registered only with both
        try:
            parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        if self._is_authorized is not None and not self._is_authorized(
                bus.sender_key(parts[0])):
            # A REP socket must answer; the answer holds nothing but the refusal.
            self._rejected()
            sock.send_multipart(replay.refuse("key no longer authorized"))
            return
        sock.send_multipart(replay.answer(
            [part.bytes for part in parts], lambda route: self.route_sequences[route]))

    def _drain_input(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if self._is_authorized is None:
                    frames = self._input.recv_multipart(zmq.NOBLOCK)
                else:
                    parts = self._input.recv_multipart(zmq.NOBLOCK, copy=False)
                    if not self._is_authorized(bus.sender_key(parts[0])):
                        self._rejected()
                        continue
                    frames = [part.bytes for part in parts]
            except zmq.Again:
                return
            self.handle(frames)

    def handle(self, frames: list[bytes]) -> None:
        if len(frames) != 1:
            self._malformed(UNKNOWN_HOST, f"{len(frames)} frames, expected 1")
            return
        payload = frames[0]
        try:
            message = wire.decode(payload)
        except wire.MalformedMessage as exc:
            self._malformed(_readable_host(payload), str(exc))
            return
        self._count_input(message)
        routes = self.routes.routes_for(message)
        if not routes:
            self.filtered += 1
        for route in routes:
            self.route_sequences[route] += 1
            sequence = self.route_sequences[route]
            bus.send_routed(self._output, self._topic(route), sequence, payload)
            if self._replay is not None:
                self._replay.record(route, sequence, payload)

    def _topic(self, route: str) -> bytes:
        topic = self._topics.get(route)
        if topic is None:
            topic = self._topics[route] = bus.routed_topic(route, self.run_id)
        return topic

    def replace_routes(self, routes: RouteTable) -> None:
        self.routes = routes

    def replace_output(self, output_socket: zmq.Socket) -> None:
        """Use a new output socket; the caller has closed the old one."""
        self._output = output_socket

    @property
    def output(self) -> zmq.Socket:
        return self._output

    def _count_input(self, message: wire.Message) -> None:
        counts = self.collectors.setdefault(message.host, CollectorCounts())
        counts.messages += 1
        counts.last_seen = time.monotonic()
        last = counts.last_seq
        if last is not None:
            if message.seq > last + 1:
                counts.gaps += message.seq - last - 1
            elif message.seq <= last:
                log.info("collector %s restarted its sequence at %d", message.host, message.seq)
        counts.last_seq = message.seq

    def _malformed(self, host: str, reason: str) -> None:
        self.malformed += 1
        self.collectors.setdefault(host, CollectorCounts()).malformed += 1
        self._errors.error("skipped a malformed message from %s (%d so far): %s",
                           host, self.malformed, reason)

    def _rejected(self) -> None:
        self.rejected += 1
        self._errors.error("dropped a message from a key no longer authorized (%d so far)",
                           self.rejected)


    def _answer_control(self) -> None:
        try:
            request = self._control.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        if request.strip() == b"status":
            reply = self.status()
        else:
            reply = {"error": f"unknown request {request[:40]!r}; known: status"}
        self._control.send_json(reply)

    def status(self) -> dict[str, Any]:
        """The counters, as the control socket reports them (``statspout-router --status``)."""
        now = time.monotonic()
        hosts = {
            host: {
                "messages": c.messages,
                "gaps": c.gaps,
                "malformed": c.malformed,
                "last_seq": c.last_seq,
                "seconds_since_last": None if c.last_seen is None else round(now - c.last_seen, 1),
            }
            for host, c in sorted(self.collectors.items())
        }
        names = list(self.routes.names) + sorted(set(self.route_sequences) - set(self.routes.names))
        routes = {
            name: {"out": self.route_sequences[name], "active": name in self.routes.names}
            for name in names
        }
        return {
            "uptime_seconds": round(now - self._started, 1),
            "hosts": hosts,
            "routes": routes,
            "filtered": self.filtered,
            "malformed": self.malformed,
            "rejected": self.rejected,
            "reloads": self.reloads,
            "run_id": f"{self.run_id:016x}",
            "start": self._gate.status(),
            "replay": None if self._replay is None else self._replay.status(),
        }

    def report(self) -> None:
        hosts = ", ".join(
            f"{host}: in={c.messages} gaps={c.gaps} malformed={c.malformed}"
            for host, c in sorted(self.collectors.items())
        )
        routes = ", ".join(f"{r}: out={n}" for r, n in sorted(self.route_sequences.items()))
        log.info(
            "collectors [%s] routes [%s] filtered=%d malformed=%d rejected=%d%s",
            hosts or "none", routes or "none", self.filtered, self.malformed, self.rejected,
            "" if self._replay is None else f" replay [{self._replay.summary()}]",
        )


def _readable_host(payload: bytes) -> str:
    """The host of a message that failed validation, when it can still be read: a collector
    that sends broken messages should be named in the counts."""
    try:
        raw = msgpack.unpackb(payload, raw=False)
    except Exception:  # msgpack raises several unrelated types for bad input
        return UNKNOWN_HOST
    host = raw.get("host") if isinstance(raw, dict) else None
    return host if isinstance(host, str) and host else UNKNOWN_HOST
