"""The router loop in-process: routing to topics, per-route numbering, accounting, status."""

from __future__ import annotations

import json
from collections.abc import Iterator

import msgpack
import pytest
import zmq
from support import inproc_router
from support.inproc_router import InprocRouter, linked_publisher
from support.netns import synthetic_sample
from support.waiting import wait_for

from statspout import bus, wire
from statspout.router.loop import UNKNOWN_HOST
from statspout.router.route_table import RouteTable
from statspout.router.routes_file import parse_routes

ROUTES = parse_routes({"routes": {
    "prod": {"include": ["label=env=prod"]},
    "h2only": {"include": ["host=h2"]},
}})


@pytest.fixture
def running(request) -> Iterator[InprocRouter]:
    context = zmq.Context()
    router = InprocRouter(context, request.node.name, RouteTable(routes=ROUTES))
    yield router
    router.close()
    context.destroy(linger=0)


def receive(sock: zmq.Socket, count: int) -> list[tuple[str, int, dict]]:
    return inproc_router.receive(sock, count, msgpack.unpackb)


def test_routes_numbering_and_accounting(running: InprocRouter) -> None:
    sink_all = bus.sink_subscriber(running.context, running.publish, "all")
    sink_prod = bus.sink_subscriber(running.context, running.publish, "prod")
    publisher = linked_publisher(running, sink_all)

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


def test_reload_runs_in_the_loop_and_routes_can_be_swapped(running: InprocRouter) -> None:
    running.reload_requested.set()
    wait_for(lambda: running.reloads, 5, "the reload callback")
    assert wait_for(lambda: running.status()["reloads"] == 1, 5, "the reload counted")
    running.router.replace_routes(running.router.routes.with_routes({}))
    routes = running.status()["routes"]
    assert routes["all"]["active"] and "prod" not in routes  # never sent: not listed


def test_unknown_control_request_gets_an_error(running: InprocRouter) -> None:
    reply = json.loads(bus.control_request(running.context, running.control, b"shutdown"))
    assert "unknown request" in reply["error"]
