"""The bus: endpoints, topics, and CURVE on the sockets it builds."""

from __future__ import annotations

import pytest
import zmq
from support.ports import free_port
from support.waiting import wait_for

from statspout import bus, security


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("tcp://127.0.0.1:5556", True),
        ("tcp://127.8.0.1:5556", True),
        ("tcp://[::1]:5556", True),
        ("tcp://localhost:5556", True),
        ("ipc:///tmp/x", True),
        ("inproc://x", True),
        ("tcp://*:5556", False),
        ("tcp://0.0.0.0:5556", False),
        ("tcp://10.250.0.10:5556", False),
        ("tcp://[::]:5556", False),
        ("tcp://router.example:5556", False),
    ],
)
def test_is_local_endpoint(endpoint: str, local: bool) -> None:
    assert bus.is_local_endpoint(endpoint) is local


def test_topics_do_not_prefix_each_other() -> None:
    assert not bus.topic_for("all").startswith(bus.topic_for("a"))
    assert bus.route_of(bus.topic_for("prod")) == "prod"


def test_default_control_endpoint_follows_xdg_runtime_dir(monkeypatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/7")
    assert bus.default_control_endpoint() == "ipc:///run/user/7/statspout/router.ctl"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert bus.default_control_endpoint().startswith("ipc:///tmp/statspout-")


def test_curve_links_carry_the_peers_key(tmp_path) -> None:
    import zmq.auth

    for name in ("router", "collector"):
        zmq.auth.create_certificates(tmp_path, name)
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    (authorized / "collector.key").write_bytes((tmp_path / "collector.key").read_bytes())
    context = zmq.Context()
    server = security.start_server_security(context, tmp_path / "router.key_secret", authorized)
    client = security.ClientKeys(security.load_key_pair(tmp_path / "collector.key_secret"),
                                 security.load_public_key(tmp_path / "router.key"))
    endpoint = f"tcp://127.0.0.1:{free_port()}"  # inproc links have no security mechanism
    router_in = bus.router_input(context, endpoint, security=server)
    publisher = bus.CollectorPublisher(context, endpoint, security=client)
    try:
        def delivered() -> zmq.Frame | None:
            publisher.publish(b"payload")
            if router_in.poll(50):
                return router_in.recv(copy=False)
            return None

        frame = wait_for(delivered, 10, "a message over CURVE")
        assert frame.bytes == b"payload"
        assert bus.sender_key(frame) == client.own.public.decode()
        assert server.authenticator.is_authorized(bus.sender_key(frame))
        assert not server.authenticator.is_authorized(None)
    finally:
        publisher.close()
        router_in.close()
        server.authenticator.stop()
        context.term()


def test_the_resend_ring_keeps_its_window_while_linked_and_everything_while_down() -> None:
    ring = bus.ResendRing(window_s=5.0, max_messages=4)

    def held() -> list[bytes]:
        return [payload for payload, _ in ring.take_counted()]
    ring.add(b"a", now=100.0, linked=True)
    ring.add(b"b", now=104.0, linked=True)
    ring.add(b"c", now=106.0, linked=True)  # a is older than 5 s now
    assert held() == [b"b", b"c"]
    ring.add(b"d", now=200.0, linked=False)  # the link is down: nothing ages out
    assert held() == [b"b", b"c", b"d"]
    ring.add(b"e", now=201.0, linked=False)
    ring.add(b"f", now=202.0, linked=False)  # over the count bound: the oldest goes
    assert held() == [b"c", b"d", b"e", b"f"] and len(ring) == 4
    ring.add(b"batch", now=203.0, linked=False, messages=3)  # a batch of 3 counts as 3
    assert ring.take_counted() == [(b"f", 1), (b"batch", 3)] and len(ring) == 4
    off = bus.ResendRing(window_s=0)
    off.add(b"a", now=1.0, linked=True)
    assert off.take_counted() == []


def test_the_publisher_resends_its_ring_to_a_router_linked_anew_not_to_the_first() -> None:
    context = zmq.Context()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    router_in = bus.router_input(context, endpoint)
    publisher = bus.CollectorPublisher(context, endpoint, resend_s=60.0)
    received: list[bytes] = []

    def drain() -> list[bytes]:
        while router_in.poll(50):
            received.append(router_in.recv())
        return received

    try:
        # The SUB attaches its link (and subscribes) only when it is used: poll it meanwhile.
        wait_for(lambda: router_in.poll(10) >= 0 and publisher.publish(b"probe"), 10,
                 "a subscriber")
        publisher.link_made()  # the first link: nothing to send again
        for payload in (b"1", b"2"):
            assert publisher.publish(payload)
        wait_for(lambda: drain()[-1:] == [b"2"], 10, "the first messages")
        assert publisher.counts.resent == 0
        publisher.link_lost()
        publisher.link_made()  # a new router: the ring goes again, oldest first, then "3"
        assert publisher.publish(b"3")
        wait_for(lambda: drain()[-1:] == [b"3"], 10, "the message after the resend")
        assert received == [b"probe", b"1", b"2", b"probe", b"1", b"2", b"3"]
        assert publisher.counts.resent == 3 and publisher.counts.resend_dropped == 0
    finally:
        publisher.close()
        router_in.close()
        context.term()
