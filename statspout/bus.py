"""The ZeroMQ bus: every socket of the pipeline is built here, with the same options.

Flow and socket roles:

    collector  XPUB --connect-->  SUB  router  PUB  <--connect-- SUB  sink worker
               (input endpoint, default :5556)      (output endpoint, default :5557)

Collector → router messages are one frame: the wire payload. Router → sink messages are three
frames: the route's topic, the router's own sequence number for that topic (8 bytes, big
endian), and the payload exactly as the collector sent it. Sinks subscribe to one topic, so a
gap in that sequence is loss between router and sink, never filtering.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import zmq

DEFAULT_ROUTER_INPUT = "tcp://127.0.0.1:5556"
DEFAULT_ROUTER_OUTPUT = "tcp://127.0.0.1:5557"
DEFAULT_HWM = 10_000
DEFAULT_ROUTE = "all"

# Closing a socket never waits for unsent messages longer than this: a dead peer must not
# hang a shutdown.
LINGER_MS = 1000

_ENDPOINT = re.compile(r"^(tcp://(\*|\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.:-]+):\d{1,5}|ipc://.+|inproc://.+)$")


def check_endpoint(text: str) -> str:
    """Return a ZeroMQ endpoint unchanged, or raise ValueError saying why it is none."""
    if not _ENDPOINT.match(text):
        raise ValueError(f"{text!r} is not a ZeroMQ endpoint (tcp://HOST:PORT, ipc://PATH)")
    if text.startswith("tcp://"):
        port = int(text.rsplit(":", 1)[1])
        if not 0 < port < 65536:
            raise ValueError(f"{text!r}: port {port} is out of range")
    return text


def topic_for(route: str) -> bytes:
    """The subscription prefix of a route; the NUL ends it, so route "a" never matches "all"."""
    return route.encode() + b"\0"


def route_of(topic: bytes) -> str:
    return topic.rstrip(b"\0").decode(errors="replace")


def pack_sequence(number: int) -> bytes:
    return number.to_bytes(8, "big")


def unpack_sequence(frame: bytes) -> int:
    if len(frame) != 8:
        raise ValueError(f"sequence frame of {len(frame)} bytes, expected 8")
    return int.from_bytes(frame, "big")


def _configure(sock: zmq.Socket, hwm: int) -> zmq.Socket:
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    return sock


@dataclass
class PublishCounts:
    sent: int = 0
    dropped_no_subscriber: int = 0
    dropped_full_queue: int = 0


class CollectorPublisher:
    """The collector's end of the bus. It never blocks: what cannot be handed over is counted.

    An XPUB socket (not a plain PUB) because it tells us two things PUB keeps to itself:
    whether anybody subscribes at all (subscription frames arrive on it), and, with
    XPUB_NODROP, when the queue to the subscriber is full (send raises Again).
    """

    def __init__(self, context: zmq.Context, endpoint: str, hwm: int = DEFAULT_HWM) -> None:
        self._socket = _configure(context.socket(zmq.XPUB), hwm)
        self._socket.setsockopt(zmq.XPUB_NODROP, 1)
        self._socket.connect(endpoint)
        self._subscriptions = 0
        self.counts = PublishCounts()

    def publish(self, payload: bytes) -> bool:
        """Send one wire payload; False (and counted) when it had to be dropped."""
        self._read_subscriptions()
        if self._subscriptions <= 0:
            self.counts.dropped_no_subscriber += 1
            return False
        try:
            self._socket.send(payload, zmq.NOBLOCK)
        except zmq.Again:
            self.counts.dropped_full_queue += 1
            return False
        self.counts.sent += 1
        return True

    def _read_subscriptions(self) -> None:
        while True:
            try:
                frame = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if frame[:1] == b"\x01":
                self._subscriptions += 1
            elif frame[:1] == b"\x00":
                self._subscriptions -= 1

    def close(self) -> None:
        self._socket.close()


def router_input(context: zmq.Context, endpoint: str, hwm: int = DEFAULT_HWM) -> zmq.Socket:
    """SUB bound on the input endpoint, subscribed to everything the collectors send."""
    sock = _configure(context.socket(zmq.SUB), hwm)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.bind(endpoint)
    return sock


def router_output(context: zmq.Context, endpoint: str, hwm: int = DEFAULT_HWM) -> zmq.Socket:
    """PUB bound on the output endpoint. A slow sink loses its own messages at its HWM (and
    sees the gap in the router's sequence); it never holds back the others."""
    sock = _configure(context.socket(zmq.PUB), hwm)
    sock.bind(endpoint)
    return sock


def sink_subscriber(
    context: zmq.Context, endpoint: str, route: str = DEFAULT_ROUTE, hwm: int = DEFAULT_HWM
) -> zmq.Socket:
    """SUB connected to the router's output, subscribed to one route."""
    sock = _configure(context.socket(zmq.SUB), hwm)
    sock.setsockopt(zmq.SUBSCRIBE, topic_for(route))
    sock.connect(endpoint)
    return sock
