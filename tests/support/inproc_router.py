"""A real router loop on a thread, over inproc sockets, for the router's in-process tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import zmq

from statspout import bus, wire
from statspout.router.loop import Router
from statspout.router.replay import ReplayStore
from statspout.router.route_table import RouteTable
from support.netns import synthetic_sample
from support.waiting import wait_for


class InprocRouter:
    """``Router`` with ``routes`` on inproc endpoints named after ``tag``, running until
    ``close``; with a control socket (``status``), and a replay store when one is given."""

    def __init__(self, context: zmq.Context, tag: str, routes: RouteTable, *,
                 run_id: int | None = None, replay: ReplayStore | None = None) -> None:
        self.context = context
        self.listen, self.publish = f"inproc://{tag}-in", f"inproc://{tag}-out"
        self.control = f"inproc://{tag}-ctl"
        self.replay = replay
        self.router = Router(
            bus.router_input(context, self.listen), bus.router_output(context, self.publish),
            routes, control_socket=bus.control_server(context, self.control),
            run_id=run_id, replay=replay,
        )
        self.stop, self.reload_requested = threading.Event(), threading.Event()
        self.reloads: list[str] = []
        self.thread = threading.Thread(
            target=self.router.run,
            args=(self.stop, self.reload_requested, lambda r: self.reloads.append("x")),
        )
        self.thread.start()

    def status(self) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(
            bus.control_request(self.context, self.control, b"status"))
        return answer

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def receive(sock: zmq.Socket, count: int, decode: Callable[[bytes], Any],
            timeout_ms: int = 5000) -> list[tuple[str, int, Any]]:
    """Up to ``count`` routed messages: (route, number, decoded payload)."""
    got = []
    while len(got) < count and sock.poll(timeout_ms):
        topic, number, payload = sock.recv_multipart()
        got.append((bus.route_of(topic), bus.unpack_sequence(number), decode(payload)))
    return got


def linked_publisher(router: InprocRouter, route_sink: zmq.Socket) -> bus.CollectorPublisher:
    """A collector's publisher whose messages reach ``route_sink`` through the router: probed
    until the subscriptions have arrived and a sample makes it through; the probes drained."""
    publisher = bus.CollectorPublisher(router.context, router.listen)

    def through() -> bool:
        publisher.publish(wire.encode(synthetic_sample(0, "probe", "probe")))
        return bool(route_sink.poll(100))
    wait_for(through, 10, "the router to pass a probe sample")
    while route_sink.poll(200):
        route_sink.recv_multipart()
    return publisher
