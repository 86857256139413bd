"""The router against hostile input: nothing kills it, every table it keeps is bounded, and
nothing a sender forges poisons its counts for good (issue 8)."""

from __future__ import annotations

import json
import logging
import threading
import time
import tracemalloc
from collections.abc import Iterator

import msgpack
import pytest
import zmq
from support.netns import synthetic_sample
from support.waiting import wait_for

from statspout import bus, wire
from statspout.router.loop import OTHER_HOSTS, STATUS_HOSTS, UNKNOWN_HOST, Router
from statspout.router.route_table import DECISION_CACHE_BYTES, RouteTable
from statspout.router.status import format_table


@pytest.fixture
def router(request) -> Iterator[Router]:
    """A Router whose loop is not run: tests call handle() on it directly."""
    context = zmq.Context()
    tag = request.node.name
    router = Router(bus.router_input(context, f"inproc://{tag}-in"),
                    bus.router_output(context, f"inproc://{tag}-out"), RouteTable(),
                    max_hosts=1000)
    yield router
    context.destroy(linger=0)


def test_an_unhashable_kind_is_counted_not_fatal(router: Router) -> None:
    for raw in ({"v": "1.0", "kind": [1]}, {"v": "².0"}, {"v": "9" * 5000}):
        router.handle([msgpack.packb(raw)])
    router.handle([wire.encode(synthetic_sample(1, "h1", "web"))])
    assert router.malformed == 3
    assert router.collectors[UNKNOWN_HOST].malformed == 3
    assert router.collectors["h1"].messages == 1 and router.route_sequences["all"] == 1


def test_no_exception_escapes_handling(router: Router, monkeypatch, caplog) -> None:
    def broken(message: wire.Message) -> list[str]:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(router.routes, "routes_for", broken)
    with caplog.at_level(logging.ERROR, "statspout.router"):
        for seq in range(1, 101):
            router.handle([wire.encode(synthetic_sample(seq, "h1", "web"))])
    assert router.internal_errors == 100
    errors = [r for r in caplog.records if "failed to handle a message" in r.getMessage()]
    assert 1 <= len(errors) <= 2  # throttled: one line a second
    assert router.status()["internal_errors"] == 100


def test_malformed_with_an_invalid_host_goes_to_one_bucket(router: Router) -> None:
    for host in ("x" * 300, ["h"], "", 12):
        router.handle([msgpack.packb({"v": "1.0", "kind": "stats", "host": host})])
    router.handle([msgpack.packb({"v": "1.0", "kind": "stats", "host": "named"})])
    assert router.collectors[UNKNOWN_HOST].malformed == 4
    assert router.collectors["named"].malformed == 1
    assert set(router.collectors) == {UNKNOWN_HOST, "named"}


def test_150k_distinct_hosts_keep_the_table_status_and_report_bounded(
    router: Router, caplog
) -> None:
    # 100,000 valid messages and 50,000 malformed ones naming a host, every host distinct:
    # before, 150,003 entries and a status of many megabytes.
    for i in range(100_000):
        router.handle([wire.encode(synthetic_sample(1, f"host-{i}", "c"))])
    for i in range(50_000):
        router.handle([msgpack.packb({"v": "1.0", "kind": "stats", "host": f"bad-{i}"})])
    assert len(router.collectors) <= 1000 + 2
    assert router.hosts_over_limit == 150_000 - 1000
    other = router.collectors[OTHER_HOSTS]
    assert other.messages == 99_000 and other.malformed == 50_000
    assert router.malformed == 50_000

    started = time.monotonic()
    status = router.status()
    status_seconds = time.monotonic() - started
    status_bytes = len(json.dumps(status))
    assert len(status["hosts"]) == STATUS_HOSTS
    assert status["hosts_not_shown"] == len(router.collectors) - STATUS_HOSTS
    assert next(iter(status["hosts"])) == OTHER_HOSTS  # the busiest first
    assert status_bytes < 20_000
    table = format_table(status)
    assert f"({status['hosts_not_shown']} more hosts" in table
    with caplog.at_level(logging.INFO, "statspout.router"):
        router.report()
    line = caplog.records[-1].getMessage()
    assert len(line) < 2_000 and f"({len(router.collectors) - 10} more)" in line
    print(f"150k hosts: status {status_bytes} bytes in {status_seconds * 1000:.1f} ms, "
          f"report line {len(line)} bytes, {len(router.collectors)} entries")


def test_silent_hosts_expire_and_make_room(request) -> None:
    context = zmq.Context()
    tag = request.node.name
    router = Router(bus.router_input(context, f"inproc://{tag}-in"),
                    bus.router_output(context, f"inproc://{tag}-out"), RouteTable(),
                    max_hosts=2, host_expiry_s=0.2)
    try:
        for host in ("a", "b", "c"):
            router.handle([wire.encode(synthetic_sample(1, host, "web"))])
        assert set(router.collectors) == {"a", "b", OTHER_HOSTS}

        def expired() -> bool:
            router.expire_hosts()
            return not router.collectors
        wait_for(expired, 5, "the silent hosts to expire")
        assert router.hosts_expired == 2
        router.handle([wire.encode(synthetic_sample(2, "c", "web"))])
        assert set(router.collectors) == {"c"}
    finally:
        context.destroy(linger=0)


def with_seq(seq: int) -> bytes:
    return msgpack.packb(synthetic_sample(1, "h1", "web").to_dict() | {"seq": seq})


def test_a_forged_huge_seq_does_not_poison_the_gap_count(router: Router) -> None:
    # Before: a seq of 2^63 set the host's gaps to 9.2·10^18 for good.
    for seq in (1, 2, 2**63, wire.INT_MAX, 3, 4, 5):
        router.handle([with_seq(seq)])
    counts = router.collectors["h1"]
    assert counts.malformed == 1  # 2^63 itself is out of the wire's range
    assert counts.sequence.gaps == 0
    assert counts.sequence.restarts == 2  # the jump beyond belief, and the way back
    router.handle([with_seq(8)])
    assert counts.sequence.gaps == 2  # real loss still counts


def test_route_cache_is_bounded_by_bytes_not_entries() -> None:
    table = RouteTable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1000):  # 1,000 containers with a 64 kB label each: 64 MB of labels
            table.routes_for(synthetic_sample(1, "h1", f"c{i}", {"big": f"{i:08d}" * 8192}))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert table.cache_bytes <= DECISION_CACHE_BYTES
    assert grown < DECISION_CACHE_BYTES + 4 * 2**20
    print(f"route cache after 64 MB of labels: {grown / 2**20:.1f} MiB held")


def test_a_multipart_control_request_gets_an_answer(request) -> None:
    context = zmq.Context()
    tag = request.node.name
    router = Router(bus.router_input(context, f"inproc://{tag}-in"),
                    bus.router_output(context, f"inproc://{tag}-out"), RouteTable(),
                    control_socket=bus.control_server(context, f"inproc://{tag}-ctl"))
    stop = threading.Event()
    loop = threading.Thread(target=router.run, args=(stop,))
    loop.start()
    client = context.socket(zmq.REQ)
    client.connect(f"inproc://{tag}-ctl")
    try:
        client.send_multipart([b"sta", b"tus"])  # before: the REP socket's state broke the loop
        assert client.poll(5000)
        assert "hosts" in client.recv_json()
        assert loop.is_alive()
    finally:
        stop.set()
        loop.join(10)
        client.close(0)
        context.destroy(linger=0)
