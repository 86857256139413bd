"""The router loop: read collectors' payloads, choose routes, forward the bytes unchanged
(a collector's batch: its items, each unchanged, regrouped into one batch per route).

Everything the loop touches (its sockets, the route table, the counters) belongs to the one
thread that runs it; signal handlers only set events that the loop looks at between polls.
No input ends the loop: what cannot be read is counted as malformed, and an error of our own
in handling one message is counted and logged, and the loop goes on.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from statspout import bus, wire
from statspout.logs import ThrottledErrors
from statspout.router.replay import ReplayStore, StartGate
from statspout.router.route_table import RouteTable
from statspout.sequence import SequenceTracker

log = logging.getLogger("statspout.router")

POLL_MS = 500
# Messages read in one go before the loop looks at its control socket and clock again, so
# that a flood of input cannot starve --status.
DRAIN_AT_MOST = 1000
# Pseudo-hosts of the counts table. Host names in the table are valid wire host names, which
# are never parenthesised by a collector that follows docs/collector.md.
UNKNOWN_HOST = "(unreadable)"  # malformed messages without a readable, valid host
OTHER_HOSTS = "(over --max-hosts)"  # hosts that arrived while the table was full
DEFAULT_MAX_HOSTS = 1000
DEFAULT_HOST_EXPIRY_S = 3600.0
# How many hosts --status and the report line list (the most messages first); the rest are
# summed up in one line.
STATUS_HOSTS = 50
REPORT_HOSTS = 10


@dataclass
class HostCounts:
    """What one collector (by host name) sent us."""

    messages: int = 0
    malformed: int = 0
    last_seen: float | None = None  # time.monotonic() of the last message
    # Its seq: a hole is a message the collector numbered that never reached us (dropped at
    # its queue or lost while the router was away).
    sequence: SequenceTracker = field(default_factory=SequenceTracker)
    # A collector linked to a new router sends its last seconds again: messages numbered at or
    # below the last seq and stamped no later than the latest timestamp are that resend
    # (forwarded; the sinks drop what they had), not a restart of its numbering.
    latest_timestamp: int = 0
    resent: int = 0


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
        max_hosts: int = DEFAULT_MAX_HOSTS,
        host_expiry_s: float = DEFAULT_HOST_EXPIRY_S,
        input_links_ended: Callable[[], int] | None = None,
        run_id: int | None = None,
        replay: ReplayStore | None = None,
        replay_socket: zmq.Socket | None = None,
        gate: StartGate | None = None,
    ) -> None:
        self._input = input_socket
        # How many input links have ended (from the socket monitor, statspout/handshakes.py): a
        # collector that left, or one whose message was over --max-message-bytes (ZeroMQ drops
        # the link and tells us nothing else).
        self._input_links_ended = input_links_ended or (lambda: 0)
        self._output = output_socket
        self._control = control_socket
        # With CURVE: asked for the sender of every message, so that a key removed from the
        # authorized folder stops a link that was authenticated before the removal.
        self._is_authorized = is_authorized
        self.routes = routes
        self._report_interval = report_interval
        self._errors = ThrottledErrors(log)
        self._restart_lines = ThrottledErrors(log)
        self._started = time.monotonic()
        # Per host, at most max_hosts (plus the two pseudo-hosts); a host silent for
        # host_expiry_s is forgotten, so that the table holds the collectors of now.
        self.collectors: dict[str, HostCounts] = {}
        self._max_hosts = max_hosts
        self._host_expiry_s = host_expiry_s
        self.hosts_over_limit = 0  # messages counted under OTHER_HOSTS
        self.hosts_expired = 0
        self.malformed = 0
        self.filtered = 0
        self.rejected = 0  # messages from peers whose key is no longer authorized
        self.internal_errors = 0  # messages whose handling failed by a bug of ours
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
        next_expiry = time.monotonic() + min(self._host_expiry_s, 60.0)
        while not stop.is_set():
            held = not self._gate.is_open
            timeout = min(POLL_MS, int(self._gate.seconds_left() * 1000) + 1) if held else POLL_MS
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
            if time.monotonic() >= next_expiry:
                self.expire_hosts()
                next_expiry = time.monotonic() + min(self._host_expiry_s, 60.0)
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
        for change in bus.subscription_changes(self._output):
            if change > 0:
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
        for _ in range(DRAIN_AT_MOST):
            if stop.is_set():
                return
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
        """Route one input message; never raises (a failure is counted and logged)."""
        try:
            self._route(frames)
        except Exception as exc:  # the last resort: one message must not end the router
            self.internal_errors += 1
            self._errors.error("failed to handle a message (%d so far): %r",
                               self.internal_errors, exc)

    def _route(self, frames: list[bytes]) -> None:
        if len(frames) != 1:
            self._malformed(None, f"{len(frames)} frames, expected 1")
            return
        payload = frames[0]
        try:
            message = wire.decode_any(payload)
        except wire.MalformedMessage as exc:
            self._malformed(exc.host, str(exc))
            return
        if isinstance(message, wire.Batch):
            self._route_batch(message)
            return
        self._count_input(message.host, message.seq, message.timestamp, 1)
        routes = self.routes.routes_for(message)
        if not routes:
            self.filtered += 1
        for route in routes:
            self.route_sequences[route] += 1
            sequence = self.route_sequences[route]
            bus.send_routed(self._output, self._topic(route), sequence, payload)
            if self._replay is not None:
                self._replay.record(route, sequence, payload)

    def _route_batch(self, batch: wire.Batch) -> None:
        """Route a collector's batch item by item, by the container entry each item names,
        without reading the items; each route gets one batch of its items, in their order,
        numbered one per item. An item that cannot be routed is counted as malformed."""
        items, indexes, entries = batch.items, batch.item_containers, batch.containers
        if entries is None or indexes is None:
            self._count_input(batch.host, batch.seq, batch.timestamp, len(items), len(items))
            self._malformed_items(batch.host, len(items), "a batch without containers or "
                                  "item_containers cannot be routed")
            return
        # Per entry, the item lists of its routes (None: an entry that is not valid); the
        # decision is the route table's, cached per container as for single messages. The
        # engine's routes go last, where an index of -1 (wire.NO_CONTAINER) finds them.
        taken: dict[str, list[bytes]] = {}
        targets_of: list[tuple[list[bytes], ...] | None] = []
        bad_entry = ""
        for entry in entries:
            try:
                routes = self.routes.routes_for_entry(batch.host, entry)
            except wire.MalformedMessage as exc:
                bad_entry = str(exc)
                targets_of.append(None)
                continue
            targets_of.append(tuple(taken.setdefault(route, []) for route in routes))
        known = len(targets_of)
        targets_of.append(tuple(taken.setdefault(route, [])
                                for route in self.routes.engine_routes(batch.host)))
        malformed = filtered = 0
        for item, index in zip(items, indexes, strict=True):
            if type(item) is bytes and type(index) is int and wire.NO_CONTAINER <= index < known \
                    and (targets := targets_of[index]) is not None:
                if not targets:
                    filtered += 1
                for held in targets:
                    held.append(item)
            else:
                malformed += 1
        self._count_input(batch.host, batch.seq, batch.timestamp, len(items), malformed)
        if malformed:
            self._malformed_items(batch.host, malformed, bad_entry or "items that are not "
                                  "binary, or whose item_containers entry is not an index of "
                                  "a valid containers entry")
        self.filtered += filtered
        for route, routed in taken.items():
            if not routed:
                continue
            first = self.route_sequences[route] + 1
            self.route_sequences[route] += len(routed)
            payload = wire.encode_batch(wire.Batch(
                seq=batch.seq, host=batch.host, timestamp=batch.timestamp, items=routed))
            bus.send_routed(self._output, self._topic(route), first, payload)
            if self._replay is not None:
                self._replay.record(route, first, payload, len(routed))

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
    def input_links_dropped(self) -> int:
        return self._input_links_ended()

    @property
    def output(self) -> zmq.Socket:
        return self._output

    def _counts_of(self, host: str) -> HostCounts:
        """The host's counts; a new host while the table is full is counted under OTHER_HOSTS."""
        counts = self.collectors.get(host)
        if counts is None:
            if len(self.collectors) - _pseudo_hosts(self.collectors) >= self._max_hosts:
                self.hosts_over_limit += 1
                host = OTHER_HOSTS
                counts = self.collectors.get(host)
            if counts is None:
                counts = self.collectors[host] = HostCounts()
        return counts

    def _count_input(self, host: str, seq: int, timestamp: int, count: int,
                     malformed: int = 0) -> None:
        """Count ``count`` messages of a collector numbered from ``seq`` (a single message, or
        a batch's items, ``malformed`` of them counted as such); ``timestamp`` is the newest."""
        counts = self._counts_of(host)
        counts.messages += count - malformed
        counts.malformed += malformed
        counts.last_seen = time.monotonic()
        if counts is self.collectors.get(OTHER_HOSTS):
            return  # many hosts' numbers in one bucket: no sequence to follow
        sequence = counts.sequence
        if sequence.last is not None and seq <= sequence.last \
                and timestamp <= counts.latest_timestamp:
            counts.resent += count
            return
        counts.latest_timestamp = max(counts.latest_timestamp, timestamp)
        before = sequence.restarts
        sequence.observe(seq, count=count)
        if sequence.restarts != before:
            self._restart_lines.log(
                logging.INFO, "collector %s restarted its sequence at %d (%d restarts so far)",
                host, seq, sequence.restarts)

    def _malformed(self, host: str | None, reason: str) -> None:
        self.malformed += 1
        counts = self._counts_of(host) if host is not None else \
            self.collectors.setdefault(UNKNOWN_HOST, HostCounts())
        counts.malformed += 1
        counts.last_seen = time.monotonic()
        self._errors.error("skipped a malformed message from %s (%d so far): %s",
                           host or UNKNOWN_HOST, self.malformed, reason)

    def _malformed_items(self, host: str, count: int, reason: str) -> None:
        """Items of a readable batch that cannot be routed (counted per host by _count_input)."""
        self.malformed += count
        self._errors.error("skipped %d malformed items of a batch from %s (%d so far): %s",
                           count, host, self.malformed, reason)

    def expire_hosts(self) -> None:
        """Forget hosts silent for longer than the expiry (the pseudo-hosts too)."""
        cutoff = time.monotonic() - self._host_expiry_s
        silent = [host for host, c in self.collectors.items()
                  if c.last_seen is not None and c.last_seen < cutoff]
        for host in silent:
            del self.collectors[host]
        self.hosts_expired += sum(1 for host in silent if host not in _PSEUDO_HOSTS)

    def _rejected(self) -> None:
        self.rejected += 1
        self._errors.error("dropped a message from a key no longer authorized (%d so far)",
                           self.rejected)


    def _answer_control(self) -> None:
        control = self._control
        assert control is not None  # polled only when there is one
        try:
            # Every frame, so that the REP socket may answer whatever shape the request had.
            request = b"".join(control.recv_multipart(zmq.NOBLOCK))
        except zmq.Again:
            return
        if request.strip() == b"status":
            reply = self.status()
        else:
            reply = {"error": f"unknown request {request[:40]!r}; known: status"}
        control.send_json(reply)

    def busiest_hosts(self, count: int) -> tuple[list[tuple[str, HostCounts]], int]:
        """The ``count`` hosts with the most messages (malformed ones included), and how many
        more there are."""
        ranked = heapq.nlargest(count, self.collectors.items(),
                                key=lambda item: (item[1].messages + item[1].malformed))
        return ranked, len(self.collectors) - len(ranked)

    def status(self) -> dict[str, Any]:
        """The counters, as the control socket reports them (``statspout-router --status``):
        the STATUS_HOSTS busiest hosts by name, and how many more."""
        now = time.monotonic()
        shown, more = self.busiest_hosts(STATUS_HOSTS)
        hosts = {
            host: {
                "messages": c.messages,
                "gaps": c.sequence.gaps,
                "malformed": c.malformed,
                "restarts": c.sequence.restarts,
                "resent": c.resent,
                "last_seq": c.sequence.last,
                "seconds_since_last": None if c.last_seen is None else round(now - c.last_seen, 1),
            }
            for host, c in shown
        }
        names = list(self.routes.names) + sorted(set(self.route_sequences) - set(self.routes.names))
        routes = {
            name: {"out": self.route_sequences[name], "active": name in self.routes.names}
            for name in names
        }
        return {
            "uptime_seconds": round(now - self._started, 1),
            "hosts": hosts,
            "hosts_not_shown": more,
            "hosts_over_limit": self.hosts_over_limit,
            "hosts_expired": self.hosts_expired,
            "routes": routes,
            "filtered": self.filtered,
            "malformed": self.malformed,
            "rejected": self.rejected,
            "internal_errors": self.internal_errors,
            "input_links_dropped": self.input_links_dropped,
            "reloads": self.reloads,
            "run_id": f"{self.run_id:016x}",
            "start": self._gate.status(),
            "replay": None if self._replay is None else self._replay.status(),
        }

    def report(self) -> None:
        shown, more = self.busiest_hosts(REPORT_HOSTS)
        hosts = ", ".join(
            f"{host}: in={c.messages} gaps={c.sequence.gaps} malformed={c.malformed}"
            for host, c in shown
        ) + (f", ({more} more)" if more else "")
        routes = ", ".join(f"{r}: out={n}" for r, n in sorted(self.route_sequences.items()))
        log.info(
            "collectors [%s] routes [%s] filtered=%d malformed=%d rejected=%d "
            "hosts_over_limit=%d hosts_expired=%d internal_errors=%d input_links_dropped=%d%s",
            hosts or "none", routes or "none", self.filtered, self.malformed, self.rejected,
            self.hosts_over_limit, self.hosts_expired, self.internal_errors,
            self.input_links_dropped,
            "" if self._replay is None else f" replay [{self._replay.summary()}]",
        )


_PSEUDO_HOSTS = (UNKNOWN_HOST, OTHER_HOSTS)


def _pseudo_hosts(collectors: dict[str, HostCounts]) -> int:
    return sum(1 for host in _PSEUDO_HOSTS if host in collectors)
