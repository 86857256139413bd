"""The ZeroMQ bus: every socket of the pipeline is built here, with the same options.

Flow and socket roles:

    collector  XPUB --connect-->  SUB  router  PUB  <--connect-- SUB  sink worker
               (input endpoint, default :5556)      (output endpoint, default :5557)

Collector → router messages are one frame: the wire payload. Router → sink messages are three
frames: the route's topic, the router's own sequence number for that topic (8 bytes, big
endian), and the payload exactly as the collector sent it. Sinks subscribe to one topic, so a
gap in that sequence is loss between router and sink, never filtering. Since bus version 1 the
topic frame carries the router's run id after the subscription prefix (``routed_topic``), so a
sink tells a restarted router from a hole; a sink that reads only the prefix is unaffected.

Replay (``docs/reliability.md``): the router also binds a REP socket (default :5558) from which
a sink asks for the messages of its route that it missed (``statspout/replay.py``).

Security: with CURVE the router's two sockets are CURVE servers and every collector and sink
a CURVE client (``security.py`` loads the keys). The router's control socket (``--status``) is
a local ipc:// REP/REQ pair without CURVE; the folder it lives in is private to the user.
"""

from __future__ import annotations

import collections
import ipaddress
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

if TYPE_CHECKING:  # security.py needs no sockets; only the types are used here
    from statspout.security import ClientKeys, ServerSecurity

DEFAULT_ROUTER_INPUT = "tcp://127.0.0.1:5556"
DEFAULT_ROUTER_OUTPUT = "tcp://127.0.0.1:5557"
DEFAULT_HWM = 10_000
# What a collector sends again to a router it has linked to anew (docs/reliability.md): the
# messages published in the last this many seconds before the link was lost (and all since),
# at most RESEND_MAX_MESSAGES of them (over two minutes of a 150-samples/s host).
DEFAULT_RESEND_S = 5.0
RESEND_MAX_MESSAGES = 20_000
DEFAULT_ROUTE = "all"
# The largest message (each frame of it) a receiving socket takes; ZeroMQ drops the link a
# larger one arrives on (the peer reconnects). A sample is under 2 KiB with ordinary labels;
# 1 MiB bounds memory per message while leaving room for hundreds of large labels.
# --max-message-bytes changes it on the router and the sinks.
DEFAULT_MAX_MESSAGE_BYTES = 2**20
MIN_MAX_MESSAGE_BYTES = 4096
# The control socket carries "status" and its bounded answer.
CONTROL_MAX_MESSAGE_BYTES = 2**20

# Closing a socket never waits for unsent messages longer than this: a dead peer must not
# hang a shutdown.
LINGER_MS = 1000

def topic_for(route: str) -> bytes:
    """The subscription prefix of a route; the NUL ends it, so route "a" never matches "all"."""
    return route.encode() + b"\0"


def route_of(topic: bytes) -> str:
    return topic.split(b"\0", 1)[0].decode(errors="replace")


# Bus version 1: after the route's NUL, one version byte and the router's run id (8 bytes, big
# endian). Subscriptions match the prefix only, so sinks of bus version 0 keep working.
ROUTED_TOPIC_VERSION = 1


def routed_topic(route: str, run_id: int) -> bytes:
    """The topic frame the router sends: the route's prefix, then its run id."""
    return topic_for(route) + bytes([ROUTED_TOPIC_VERSION]) + run_id.to_bytes(8, "big")


def run_of(topic: bytes) -> int | None:
    """The router run id in a topic frame; None from a router of bus version 0 (or a topic
    whose suffix is of an unknown version)."""
    _, _, suffix = topic.partition(b"\0")
    if len(suffix) != 9 or suffix[0] != ROUTED_TOPIC_VERSION:
        return None
    return int.from_bytes(suffix[1:], "big")


def pack_sequence(number: int) -> bytes:
    return number.to_bytes(8, "big")


# pyzmq's flags are enums, and or-ing them on every frame costs more than the send itself.
_MORE = int(zmq.SNDMORE)


def send_routed(socket: zmq.Socket, topic: bytes, number: int, payload: bytes) -> None:
    """One router → sink message: [topic, the route's sequence number, payload]."""
    socket.send(topic, _MORE)
    socket.send(pack_sequence(number), _MORE)
    socket.send(payload)


def unpack_sequence(frame: bytes) -> int:
    if len(frame) != 8:
        raise ValueError(f"sequence frame of {len(frame)} bytes, expected 8")
    return int.from_bytes(frame, "big")


def is_local_endpoint(endpoint: str) -> bool:
    """True when only this machine can reach the endpoint: ipc://, inproc://, or a tcp://
    loopback address. ``tcp://*`` and host names other than localhost count as not local."""
    if not endpoint.startswith("tcp://"):
        return True
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_control_endpoint() -> str:
    """The router's control socket: in $XDG_RUNTIME_DIR when set, else in a per-user folder
    under /tmp, so that one user's routers do not answer another's ``--status``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(runtime, "statspout") if runtime else Path(f"/tmp/statspout-{os.getuid()}")
    return f"ipc://{folder}/router.ctl"


def _configure(
    sock: zmq.Socket,
    hwm: int,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    server: ServerSecurity | None = None,
    client: ClientKeys | None = None,
) -> zmq.Socket:
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    # On every socket, the sending ones too: they receive subscriptions (PUB, XPUB) or replies.
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    # CURVE options must be set before bind/connect; they apply to every later link.
    if server is not None:
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, server.own.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, server.own.public)
    if client is not None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, client.server_public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, client.own.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, client.own.public)
    return sock


@dataclass
class PublishCounts:
    """In messages: a batch (wire 1.2) counts as the messages it carries."""

    sent: int = 0
    dropped_no_subscriber: int = 0
    dropped_full_queue: int = 0
    # Messages sent again to a new router (the ring of ResendRing), and those of them its
    # full queue refused (they may have been lost with the old router, uncounted otherwise).
    resent: int = 0
    resend_dropped: int = 0
    # Payloads sent that were batches (their messages are counted in ``sent``).
    batches: int = 0


class ResendRing:
    """The payloads last sent, to send again when a router is linked anew: what a killed
    router took from the socket or held in its buffers is lost with it, and nothing on the
    bus can tell which; the sinks drop the repeats (sinks/recent.py).

    Bounded by ``window_s`` seconds (counted back from now while linked, and from the moment
    the link was lost while it is down, so that what went just before a router died is still
    held when the next one comes) and by ``max_messages`` messages (a batch counts as the
    messages it carries). Evictions are not losses.
    """

    def __init__(self, window_s: float = DEFAULT_RESEND_S,
                 max_messages: int = RESEND_MAX_MESSAGES) -> None:
        self._window_s = window_s
        self._max_messages = max_messages
        self._entries: collections.deque[tuple[float, bytes, int]] = collections.deque()
        self._messages = 0

    def add(self, payload: bytes, now: float, linked: bool, messages: int = 1) -> None:
        if self._window_s <= 0:
            return
        self._entries.append((now, payload, messages))
        self._messages += messages
        while self._messages > self._max_messages:
            self._drop_oldest()
        if linked:
            cutoff = now - self._window_s
            while self._entries and self._entries[0][0] < cutoff:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        self._messages -= self._entries.popleft()[2]

    def take_counted(self) -> list[tuple[bytes, int]]:
        """Everything held, oldest first, with the messages each payload carries (the ring
        keeps them: a router may die again)."""
        return [(payload, messages) for _, payload, messages in self._entries]

    def __len__(self) -> int:
        """Messages held."""
        return self._messages


def subscription_changes(sock: zmq.Socket) -> Iterator[int]:
    """What an XPUB socket has been told since last asked: +1 for each subscription, −1 for
    each unsubscription. A socket that cannot be read (a plain PUB) tells nothing."""
    while True:
        try:
            frame = sock.recv(zmq.NOBLOCK)
        except zmq.ZMQError:  # Again: nothing more; any other: not an XPUB
            return
        if frame[:1] == b"\x01":
            yield 1
        elif frame[:1] == b"\x00":
            yield -1


class CollectorPublisher:
    """The collector's end of the bus. It never blocks: what cannot be handed over is counted.

    An XPUB socket (not a plain PUB) because it tells us two things PUB keeps to itself:
    whether anybody subscribes at all (subscription frames arrive on it), and, with
    XPUB_NODROP, when the queue to the subscriber is full (send raises Again).
    """

    def __init__(
        self,
        context: zmq.Context,
        endpoint: str,
        hwm: int = DEFAULT_HWM,
        security: ClientKeys | None = None,
        resend_s: float = DEFAULT_RESEND_S,
    ) -> None:
        self._socket = _configure(context.socket(zmq.XPUB), hwm, client=security)
        self._socket.setsockopt(zmq.XPUB_NODROP, 1)
        self._socket.connect(endpoint)
        self._subscriptions = 0
        self.counts = PublishCounts()
        self._ring = ResendRing(resend_s)
        # Set from the link monitor's thread (link_made/link_lost); read here.
        self._ever_linked = False
        self._linked = threading.Event()
        self._relinked = threading.Event()

    def link_made(self) -> None:
        """A router took the link (ZeroMQ's handshake succeeded). Any link after the first is
        a new router process, or the old one reconnected: the ring is sent again before the
        next message. Non-verbose XPUB shows no re-subscription on the same pipe, so the
        handshake is the signal. Thread-safe."""
        if self._ever_linked:
            self._relinked.set()
        self._ever_linked = True
        self._linked.set()

    def link_lost(self) -> None:
        """The link to the router ended: the ring stops ageing until the next link."""
        self._linked.clear()

    def publish(self, payload: bytes, messages: int = 1) -> bool:
        """Send one wire payload (a batch: of ``messages`` messages); False (and counted, in
        messages) when it had to be dropped."""
        self._read_subscriptions()
        if self._subscriptions <= 0:
            self.counts.dropped_no_subscriber += messages
            return False
        if self._relinked.is_set():
            self._relinked.clear()
            self._resend()
        try:
            self._socket.send(payload, zmq.NOBLOCK)
        except zmq.Again:
            self.counts.dropped_full_queue += messages
            return False
        self.counts.sent += messages
        self.counts.batches += messages > 1
        self._ring.add(payload, time.monotonic(), self._linked.is_set(), messages)
        return True

    def _resend(self) -> None:
        held = self._ring.take_counted()
        for done, (payload, messages) in enumerate(held):
            try:
                self._socket.send(payload, zmq.NOBLOCK)
            except zmq.Again:
                self.counts.resend_dropped += sum(count for _, count in held[done:])
                return
            self.counts.resent += messages

    def _read_subscriptions(self) -> None:
        self._subscriptions += sum(subscription_changes(self._socket))

    @property
    def socket(self) -> zmq.Socket:
        """The XPUB socket, for a monitor (statspout/handshakes.py); send through publish()."""
        return self._socket

    def close(self) -> None:
        self._socket.close()


def router_input(
    context: zmq.Context,
    endpoint: str,
    hwm: int = DEFAULT_HWM,
    security: ServerSecurity | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> zmq.Socket:
    """SUB bound on the input endpoint, subscribed to everything the collectors send."""
    sock = _configure(context.socket(zmq.SUB), hwm, max_message_bytes=max_message_bytes,
                      server=security)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.bind(endpoint)
    return sock


def router_output(
    context: zmq.Context,
    endpoint: str,
    hwm: int = DEFAULT_HWM,
    security: ServerSecurity | None = None,
) -> zmq.Socket:
    """XPUB bound on the output endpoint. A slow sink loses its own messages at its HWM (and
    sees the gap in the router's sequence); it never holds back the others. An XPUB rather
    than a PUB so that the router sees the sinks' subscriptions arrive (it holds its input
    after a start until they do); the router must read them."""
    sock = _configure(context.socket(zmq.XPUB), hwm, server=security)
    sock.bind(endpoint)
    return sock


def sender_key(frame: zmq.Frame) -> str | None:
    """The Z85 public key a CURVE peer authenticated with (ZAP's User-Id), None without CURVE."""
    try:
        user_id = frame.get("User-Id")
    except zmq.ZMQError:
        return None
    return user_id if isinstance(user_id, str) else None


def sink_subscriber(
    context: zmq.Context,
    endpoint: str,
    route: str = DEFAULT_ROUTE,
    hwm: int = DEFAULT_HWM,
    security: ClientKeys | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> zmq.Socket:
    """SUB connected to the router's output, subscribed to one route."""
    sock = _configure(context.socket(zmq.SUB), hwm, max_message_bytes=max_message_bytes,
                      client=security)
    sock.setsockopt(zmq.SUBSCRIBE, topic_for(route))
    sock.connect(endpoint)
    return sock


def control_server(context: zmq.Context, endpoint: str) -> zmq.Socket:
    """REP bound on the router's local control endpoint; the ipc folder is made private."""
    if endpoint.startswith("ipc://"):
        Path(endpoint[len("ipc://"):]).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    sock = _configure(context.socket(zmq.REP), 16,
                      max_message_bytes=CONTROL_MAX_MESSAGE_BYTES)
    sock.bind(endpoint)
    return sock


def control_request(
    context: zmq.Context, endpoint: str, request: bytes, timeout_ms: int = 3000
) -> bytes:
    """Ask the router's control socket once; TimeoutError when nobody answers in time."""
    sock = _configure(context.socket(zmq.REQ), 16,
                      max_message_bytes=CONTROL_MAX_MESSAGE_BYTES)
    sock.setsockopt(zmq.LINGER, 0)  # an unanswered request must not hold up the exit
    try:
        sock.connect(endpoint)
        sock.send(request)
        if not sock.poll(timeout_ms):
            raise TimeoutError(f"no answer from the router's control socket {endpoint}")
        return sock.recv()
    finally:
        sock.close()


def replay_endpoint_for(output: str) -> str:
    """The default replay endpoint of a router output: the next port of a tcp:// output
    (``:5557`` → ``:5558``), ``PATH.replay`` of an ipc:// one. Sinks derive it from the output
    they connect to, so one setting (the output) places both."""
    if output.startswith("tcp://"):
        address, port = output.rsplit(":", 1)
        if int(port) >= 65535:
            raise ValueError(f"{output}: no port after it for the replay endpoint; give one")
        return f"{address}:{int(port) + 1}"
    return output + ".replay"


def replay_server(
    context: zmq.Context,
    endpoint: str,
    security: ServerSecurity | None = None,
) -> zmq.Socket:
    """REP bound on the router's replay endpoint: sinks ask it for messages they missed."""
    sock = _configure(context.socket(zmq.REP), 64, server=security)
    sock.bind(endpoint)
    return sock


def replay_client(
    context: zmq.Context,
    endpoint: str,
    security: ClientKeys | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> zmq.Socket:
    """REQ connected to the router's replay endpoint. After a request without an answer the
    socket cannot send again: close it and make a new one (the "lazy pirate" pattern). Each
    replayed payload is a frame of its own, so the sink's own limit applies to them as to the
    live stream."""
    sock = _configure(context.socket(zmq.REQ), 64, max_message_bytes=max_message_bytes,
                      client=security)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock
