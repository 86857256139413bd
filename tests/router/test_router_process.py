"""The router as a real process: routes file, SIGHUP reloads, status, restarts, refusals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import zmq
from support.netns import PUBLISH_ENV, publish_argv
from support.ports import free_port
from support.processes import Process, program
from support.samples import make_stats
from support.waiting import wait_for

from statspout import bus, wire
from statspout.router import main as router_main

ROUTES_V1 = '[routes.web]\ninclude = ["name=web*"]\n'
ROUTES_V2 = ROUTES_V1 + '[routes.db]\ninclude = ["name=db*"]\n'


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    return {
        "listen": f"tcp://127.0.0.1:{free_port()}",
        "publish": f"tcp://127.0.0.1:{free_port()}",
        "control": f"ipc://{tmp_path}/router.ctl",
    }


def start_router(places: dict[str, str], *extra: str) -> Process:
    router = Process([program("statspout-router"), "--listen", places["listen"],
                      "--publish", places["publish"], "--control", places["control"],
                      "--report-interval", "1", *extra])
    wait_for(lambda: "routing from" in router.log() or router.popen.poll() is not None, 15,
             "the router to start")
    assert router.popen.poll() is None, router.log()
    return router


class Subscriber:
    """A sink's socket, as bus.sink_subscriber builds it for every sink worker."""

    def __init__(self, context: zmq.Context, endpoint: str, route: str) -> None:
        self.socket = bus.sink_subscriber(context, endpoint, route)
        self.received: list[tuple[int, dict]] = []

    def drain(self, timeout_ms: int = 100) -> list[tuple[int, dict]]:
        while self.socket.poll(timeout_ms):
            _topic, number, payload = self.socket.recv_multipart()
            self.received.append((bus.unpack_sequence(number), msgpack.unpackb(payload)))
            timeout_ms = 0
        return self.received

    def names(self) -> set[str]:
        return {m["name"] for _, m in self.drain()}


def test_bad_routes_file_at_start_exits_2_with_one_line(tmp_path: Path, places) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text('[routes.web]\ninclude = ["size=big"]\n')
    result = subprocess.run(
        [program("statspout-router"), "--routes", str(routes), "--control", places["control"]],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert str(routes) in result.stderr and "'size=big' is not a selector" in result.stderr


@pytest.mark.parametrize("flag", ["--listen", "--publish"])
def test_refuses_non_loopback_without_curve(flag: str) -> None:
    result = subprocess.run([program("statspout-router"), flag, "tcp://10.250.9.9:5556"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "refusing to bind it without CURVE" in result.stderr


def test_insecure_passes_the_check_and_curve_needs_both_options() -> None:
    parser = router_main.build_parser()
    args = parser.parse_args(["--listen", "tcp://10.250.9.9:5556", "--insecure"])
    router_main.check_security_options(parser, args)  # no exit
    for bad in (["--curve-secret-key", "x"], ["--authorized-keys", "d"]):
        with pytest.raises(SystemExit) as caught:
            router_main.check_security_options(parser, parser.parse_args(bad))
        assert caught.value.code == 2


def test_sighup_reloads_routes_keeps_links_and_rejects_broken_file(
    tmp_path: Path, places, context
) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES_V1)
    router = start_router(places, "--routes", str(routes))
    publisher = Process(publish_argv(places["listen"], "h1", names="web1,db1", interval="0.1"),
                        env=PUBLISH_ENV)
    everything = Subscriber(context, places["publish"], "all")
    web, db = (Subscriber(context, places["publish"], r) for r in ("web", "db"))
    try:
        wait_for(lambda: web.names() == {"web1"}, 15, "web1 on route web")
        assert db.names() == set()

        routes.write_text(ROUTES_V2)
        router.popen.send_signal(signal.SIGHUP)
        wait_for(lambda: db.names() == {"db1"}, 10, "db1 on the reloaded route db")
        # The log is read by a thread of its own: it may trail the data by a moment.
        wait_for(lambda: "reloaded" in router.log() and "routes all, web, db" in router.log(),
                 10, "the reload's log line")

        routes.write_text('[routes.db]\ninclude = ["label=oops"\n')  # broken TOML
        router.popen.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in router.log(), 10, "the rejection")
        rejected = [line for line in router.stderr if "reload rejected" in line]
        assert len(rejected) == 1 and str(routes) in rejected[0]
        before = len(db.drain())
        wait_for(lambda: len(db.drain()) > before + 3, 10, "route db still in force")

        # The links were never dropped: the router's numbering of "all" has no hole, and the
        # publisher (one process, one socket) kept delivering.
        numbers = [n for n, _ in everything.drain()]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert router.popen.poll() is None
    finally:
        publisher.stop()
        router.stop()
        for sub in (everything, web, db):
            sub.socket.close()


def test_status_shows_hosts_and_routes(tmp_path: Path, places, context) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES_V2)
    router = start_router(places, "--routes", str(routes))
    publishers = [Process(publish_argv(places["listen"], host, names=names, interval="0.1"),
                          env=PUBLISH_ENV)
                  for host, names in (("alpha", "web1"), ("beta", "db1,db2"))]
    sink = Subscriber(context, places["publish"], "all")

    def status() -> dict:
        result = subprocess.run(
            [program("statspout-router"), "--status", "--json", "--control", places["control"]],
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    try:
        figures = wait_for(lambda: (s := status())["routes"]["db"]["out"] > 0
                           and {"alpha", "beta"} <= set(s["hosts"]) and s, 15, "both hosts")
        assert figures["hosts"]["alpha"]["messages"] > 0 and figures["hosts"]["beta"]["gaps"] == 0
        assert set(figures["routes"]) == {"all", "web", "db"}
        table = subprocess.run(
            [program("statspout-router"), "--status", "--control", places["control"]],
            capture_output=True, text=True, timeout=30,
        )
        assert table.returncode == 0
        assert table.stdout.splitlines()[0].split()[:3] == ["HOST", "IN", "GAPS"]
        assert any(line.startswith("beta ") for line in table.stdout.splitlines())
        assert any(line.startswith("db ") for line in table.stdout.splitlines())
        # The periodic log line carries the same counters.
        wait_for(lambda: "alpha: in=" in router.log(), 10, "the periodic report")
    finally:
        for publisher in publishers:
            publisher.stop()
        router.stop()
        sink.socket.close()


def test_status_without_router_fails_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [program("statspout-router"), "--status", "--control", f"ipc://{tmp_path}/none.ctl"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1


def test_collectors_and_sinks_survive_a_router_restart(places, context) -> None:
    router = start_router(places)
    publisher = Process(publish_argv(places["listen"], "h1", names="web1", interval="0.1"),
                        env=PUBLISH_ENV)
    sink = Subscriber(context, places["publish"], "all")
    try:
        wait_for(lambda: sink.drain(), 15, "data before the restart")
        router.stop()
        assert router.popen.returncode == 0
        last_seq = sink.drain()[-1][1]["seq"]
        router = start_router(places)
        wait_for(lambda: any(m["seq"] > last_seq for _, m in sink.drain()), 15,
                 "data after the restart")
        # Same publisher process, same sink socket; the new router numbers afresh (a sink logs
        # the restart of the sequence, it is not a gap).
        number, first_after = next((n, m) for n, m in sink.received if m["seq"] > last_seq)
        assert number <= first_after["seq"] - last_seq
        assert publisher.popen.poll() is None
    finally:
        publisher.stop()
        router.stop()
        sink.socket.close()


def test_an_oversize_message_drops_its_link_and_is_counted(places, context) -> None:
    router = start_router(places, "--max-message-bytes", "65536")
    collector = bus.CollectorPublisher(context, places["listen"])
    sink = Subscriber(context, places["publish"], "all")
    status_argv = [program("statspout-router"), "--status", "--json", "--control",
                   places["control"]]

    def status() -> dict:
        return json.loads(subprocess.run(status_argv, capture_output=True, text=True,
                                         timeout=30, check=True).stdout)

    def through(name: str) -> bool:
        collector.publish(wire.encode(make_stats(name=name)))
        return any(m["name"] == name for _, m in sink.drain())

    try:
        wait_for(lambda: through("before"), 15, "a sample through the router")
        too_big = wire.encode(make_stats(name="huge", labels={"k": "x" * 4000})) + b"\0" * 70_000
        assert collector.publish(too_big)
        wait_for(lambda: status()["input_links_dropped"] >= 1, 15, "the dropped link counted")
        # The collector's socket reconnects by itself and what it sends next gets through.
        wait_for(lambda: through("after"), 15, "a sample after the oversize one")
        assert all(m["name"] != "huge" for _, m in sink.received)
        assert router.popen.poll() is None
        assert status()["malformed"] == 0
    finally:
        collector.close()
        router.stop()
        sink.socket.close()


@pytest.mark.parametrize(("flag", "value"), [("--max-message-bytes", "100"),
                                             ("--max-hosts", "0"), ("--host-expiry", "0.5")])
def test_bounds_below_their_minimum_exit_2_in_one_line(flag: str, value: str) -> None:
    result = subprocess.run([program("statspout-router"), flag, value],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and flag in result.stderr


@pytest.mark.parametrize("option", ["--listen", "--replay"])
def test_router_whose_port_is_taken_exits_at_once_naming_the_endpoint(places, option) -> None:
    """--replay by default: the port after --publish's, which another program may hold."""
    endpoint = places["listen"] if option == "--listen" else \
        bus.replay_endpoint_for(places["publish"])
    port = int(endpoint.rsplit(":", 1)[1])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        started = time.monotonic()
        result = subprocess.run(
            [program("statspout-router"), "--listen", places["listen"],
             "--publish", places["publish"], "--control", places["control"]],
            capture_output=True, text=True, timeout=30,
        )
    assert result.returncode == 1
    assert time.monotonic() - started < 10
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"cannot bind {option} {endpoint}: Address already in use" in result.stderr


def test_second_router_leaves_the_live_routers_control_socket_alone(places) -> None:
    live = start_router(places)
    try:
        second = subprocess.run(
            [program("statspout-router"), "--listen", f"tcp://127.0.0.1:{free_port()}",
             "--publish", f"tcp://127.0.0.1:{free_port()}", "--control", places["control"]],
            capture_output=True, text=True, timeout=30,
        )
        assert second.returncode == 1
        assert second.stderr.count("\n") == 1, second.stderr
        assert f"--control {places['control']}: another router answers there" in second.stderr
        # The live router still answers its --status.
        status = subprocess.run(
            [program("statspout-router"), "--status", "--json", "--control", places["control"]],
            capture_output=True, text=True, timeout=30,
        )
        assert status.returncode == 0 and "uptime_seconds" in json.loads(status.stdout)
    finally:
        assert live.stop() == 0
    assert not Path(places["control"].removeprefix("ipc://")).exists()


def test_status_into_a_closed_pipe_ends_quietly(places) -> None:
    router = start_router(places)
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -3` after its three lines
    try:
        result = subprocess.run(
            [program("statspout-router"), "--status", "--control", places["control"]],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=30,
        )
    finally:
        os.close(write_end)
        router.stop()
    assert result.returncode == 0
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr


def _status(places: dict[str, str]) -> dict:
    result = subprocess.run(
        [program("statspout-router"), "--status", "--json", "--control", places["control"]],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_started_router_holds_its_input_until_a_sink_subscribes(places, context) -> None:
    router = start_router(places, "--start-grace", "60")
    publisher = Process(publish_argv(places["listen"], "h1", names="web1", interval="0.1"),
                        env=PUBLISH_ENV)
    sink = None
    try:
        # The publisher sends every 0.1 s from its start; give it time to send many.
        held = wait_for(lambda: (s := _status(places))["uptime_seconds"] >= 3 and s, 15,
                        "three seconds of the router")
        assert held["start"] == {"open": False, "opened_by": None, "held_seconds": 0.0}
        assert held["hosts"] == {} and held["routes"]["all"]["out"] == 0  # nothing read yet
        sink = Subscriber(context, places["publish"], "all")
        wait_for(lambda: sink.drain(), 15, "data once a sink subscribed")
        # Nothing was forwarded before the subscription: the sink has the route from number 1.
        assert sink.received[0][0] == 1
        opened = _status(places)
        assert opened["start"]["opened_by"] == "a subscription"
        assert opened["replay"]["routes"]["all"]["oldest_seq"] == 1
    finally:
        publisher.stop()
        router.stop()
        if sink is not None:
            sink.socket.close()


def test_without_sinks_the_router_forwards_after_the_grace(places) -> None:
    router = start_router(places, "--start-grace", "1")
    try:
        opened = wait_for(lambda: (s := _status(places))["start"]["open"] and s, 10,
                          "the grace period to pass")
        assert opened["start"]["opened_by"] == "the grace period"
        assert opened["start"]["held_seconds"] >= 1.0
    finally:
        router.stop()
