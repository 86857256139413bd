"""The router loop in-process: routing to topics, per-route numbering, accounting, status."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import msgpack
import pytest
import zmq
from support.netns import synthetic_sample
from support.waiting import wait_for

from statspout import bus, wire
from statspout.router.loop import UNKNOWN_HOST, Router
from statspout.router.route_table import RouteTable
from statspout.router.routes_file import parse_routes

ROUTES = parse_routes({"routes": {
    "prod": {"include": ["label=env=prod"]},
    "h2only": {"include": ["host=h2"]},
}})


class Running:
    def __init__(self, context: zmq.Context, tag: str) -> None:
        self.context = context
        self.listen, self.publish = f"inproc://{tag}-in", f"inproc://{tag}-out"
        self.control = f"inproc://{tag}-ctl"
        self.router = Router(
            bus.router_input(context, self.listen), bus.router_output(context, self.publish),
            RouteTable(routes=ROUTES), control_socket=bus.control_server(context, self.control),
        )
        self.stop, self.reload_requested = threading.Event(), threading.Event()
        self.reloads: list[str] = []
        self.thread = threading.Thread(
            target=self.router.run,
            args=(self.stop, self.reload_requested, lambda r: self.reloads.append("x")),
        )
        self.thread.start()

    def status(self) -> dict:
        return json.loads(bus.control_request(self.context, self.control, b"status"))


@pytest.fixture
def running(request) -> Iterator[Running]:
    context = zmq.Context()
    running = Running(context, request.node.name)
    yield running
    running.stop.set()
    running.thread.join(10)
    context.destroy(linger=0)


def receive(sock: zmq.Socket, count: int, timeout_ms: int = 5000) -> list[tuple[str, int, dict]]:
    got = []
    while len(got) < count and sock.poll(timeout_ms):
        topic, number, payload = sock.recv_multipart()
        got.append((bus.route_of(topic), bus.unpack_sequence(number), msgpack.unpackb(payload)))
    return got


def connected_publisher(running: Running, route_sink: zmq.Socket) -> bus.CollectorPublisher:
    publisher = bus.CollectorPublisher(running.context, running.listen)
    # Probe until the subscription has arrived and a sample makes it through.
    def through() -> bool:
        publisher.publish(wire.encode(synthetic_sample(0, "probe", "probe")))
        return bool(route_sink.poll(100))
    wait_for(through, 10, "the router to pass a probe sample")
    while route_sink.poll(200):
        route_sink.recv_multipart()
    return publisher


def test_routes_numbering_and_accounting(running: Running) -> None:
    sink_all = bus.sink_subscriber(running.context, running.publish, "all")
    sink_prod = bus.sink_subscriber(running.context, running.publish, "prod")
    publisher = connected_publisher(running, sink_all)

    messages = [
        synthetic_sample(1, "h1", "web", {"env": "prod"}),
        synthetic_sample(2, "h1", "db"),
        synthetic_sample(5, "h1", "db"),  # seq 3 and 4 lost on the way: two gaps
        synthetic_sample(1, "h2", "web", {"env": "prod"}),
        synthetic_sample(2, "h2", "ignored", {"statspout.ignore": "true"}),
    ]
    for message in messages:
        assert publisher.publish(wire.encode(message))
    publisher.publish(b"\xc1 not msgpack")
    publisher.publish(msgpack.packb({"v": "1.0", "kind": "stats", "host": "h2"}))

    on_all = receive(sink_all, 4)
    assert [(m["host"], m["name"]) for _, _, m in on_all] == [
        ("h1", "web"), ("h1", "db"), ("h1", "db"), ("h2", "web")]
    numbers = [n for _, n, _ in on_all]
    assert numbers == list(range(numbers[0], numbers[0] + 4))  # contiguous: filtering is no gap
    on_prod = receive(sink_prod, 2)
    assert [(r, n, m["host"]) for r, n, m in on_prod] == [("prod", 1, "h1"), ("prod", 2, "h2")]
    assert not sink_prod.poll(200)

    status = wait_for(lambda: (s := running.status())["malformed"] == 2 and s, 5,
                      "both malformed messages counted")
    assert status["hosts"]["h1"] == {**status["hosts"]["h1"], "messages": 3, "gaps": 2,
                                     "malformed": 0, "last_seq": 5}
    assert status["hosts"]["h2"]["messages"] == 2 and status["hosts"]["h2"]["malformed"] == 1
    assert status["hosts"][UNKNOWN_HOST]["malformed"] == 1
    assert status["routes"]["prod"] == {"out": 2, "active": True}
    assert status["routes"]["h2only"]["out"] == 1  # the ignored one is not sent
    assert status["filtered"] == 1
    for sock in (sink_all, sink_prod):
        sock.close()
    publisher.close()


def test_reload_runs_in_the_loop_and_routes_can_be_swapped(running: Running) -> None:
    running.reload_requested.set()
    wait_for(lambda: running.reloads, 5, "the reload callback")
    assert wait_for(lambda: running.status()["reloads"] == 1, 5, "the reload counted")
    running.router.replace_routes(running.router.routes.with_routes({}))
    routes = running.status()["routes"]
    assert routes["all"]["active"] and "prod" not in routes  # never sent: not listed


def test_unknown_control_request_gets_an_error(running: Running) -> None:
    reply = json.loads(bus.control_request(running.context, running.control, b"shutdown"))
    assert "unknown request" in reply["error"]
