"""Batches (wire 1.2) through the router in-process: split per route by container, numbered per
item, a bad item costing only itself, and old single-message collectors beside batching ones."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import msgpack
import pytest
import zmq
from support import inproc_router
from support.feed import SinkWorkerThread
from support.inproc_router import InprocRouter, linked_publisher
from support.netns import synthetic_sample
from support.samples import make_engine
from support.waiting import wait_for

from statspout import bus, wire
from statspout.collector.batching import BatchingPublisher
from statspout.router.replay import ReplayLimits, ReplayStore
from statspout.router.route_table import RouteTable
from statspout.router.routes_file import parse_routes
from statspout.sinks.base import Sink
from statspout.sinks.runtime import SinkWorker

ROUTES = parse_routes({"routes": {
    "prod": {"include": ["label=env=prod"]},
    "h2only": {"include": ["host=h2"]},
    "named": {"include": ["label=nothing-has-this"]},
}})


@pytest.fixture
def running(request) -> Iterator[InprocRouter]:
    context = zmq.Context()
    router = InprocRouter(context, request.node.name, RouteTable(routes=ROUTES), run_id=7,
                          replay=ReplayStore(7, ReplayLimits()))
    yield router
    router.close()
    context.destroy(linger=0)


def receive(sock: zmq.Socket, count: int) -> list[tuple[str, int, wire.Message | wire.Batch]]:
    return inproc_router.receive(sock, count, wire.decode_any)


def batch_payload(host: str, first_seq: int, messages: list[wire.Message]) -> bytes:
    """A collector's batch of ``messages`` (numbered from ``first_seq`` by the caller)."""
    sent: list[bytes] = []

    class Keep:
        counts = bus.PublishCounts()

        def publish(self, payload: bytes, messages: int = 1) -> bool:
            sent.append(payload)
            return True

    batcher = BatchingPublisher(Keep(), host, max_items=len(messages))
    for message in messages:
        batcher.add(message)
    assert len(sent) == 1
    return sent[0]


def items_of(batch: wire.Message | wire.Batch) -> list[tuple[str, int]]:
    assert isinstance(batch, wire.Batch) and batch.containers is None
    return [(m.name if not isinstance(m, wire.EngineInfo) else "(engine)", m.seq)
            for m in (wire.decode(item) for item in batch.items)]


def test_a_batch_is_split_per_route_in_order_and_numbered_per_item(running: InprocRouter) -> None:
    sinks = {route: bus.sink_subscriber(running.context, running.publish, route)
             for route in ("all", "prod", "h2only", "named")}
    publisher = linked_publisher(running, sinks["all"])
    messages: list[wire.Message] = [
        synthetic_sample(1, "h2", "web", {"env": "prod"}),
        synthetic_sample(2, "h2", "db"),
        synthetic_sample(3, "h2", "quiet", {"statspout.ignore": "true"}),
        make_engine(seq=4, host="h2"),
        synthetic_sample(5, "h2", "web", {"env": "prod"}),
        synthetic_sample(6, "h2", "db", {"statspout.routes": "prod"}),
    ]
    assert publisher.publish(batch_payload("h2", 1, messages), len(messages))
    # A single message after it: numbered after the batch's items on every route.
    assert publisher.publish(wire.encode(synthetic_sample(7, "h2", "web", {"env": "prod"})))

    (_, number, batch), (_, after, single) = receive(sinks["all"], 2)
    assert items_of(batch) == [("web", 1), ("db", 2), ("(engine)", 4), ("web", 5)]
    assert after == number + 4 and isinstance(single, wire.ContainerStats)
    (_, first_prod, prod), (_, next_prod, _) = receive(sinks["prod"], 2)
    assert items_of(prod) == [("web", 1), ("(engine)", 4), ("web", 5), ("db", 6)]
    assert (first_prod, next_prod) == (1, 5)
    (_, _, h2), _ = receive(sinks["h2only"], 2)
    assert items_of(h2) == [("web", 1), ("db", 2), ("(engine)", 4), ("web", 5)]
    # A route no container goes to: only the engine item (judged on host selectors alone).
    (_, _, named), = receive(sinks["named"], 1)
    assert items_of(named) == [("(engine)", 4)]
    router = running.router
    assert router.route_sequences["prod"] == 5 and router.filtered == 1
    host = router.collectors["h2"]
    assert (host.messages, host.malformed, host.sequence.last, host.sequence.gaps) == (
        7, 0, 7, 0)
    held = running.replay.status()["routes"]["prod"]
    assert (held["messages"], held["oldest_seq"], held["newest_seq"]) == (5, 1, 5)
    for sock in sinks.values():
        sock.close()
    publisher.close()


def test_a_bad_item_or_entry_costs_only_itself(running: InprocRouter) -> None:
    sink = bus.sink_subscriber(running.context, running.publish, "all")
    publisher = linked_publisher(running, sink)
    good = [wire.encode(synthetic_sample(seq, "h1", f"c{seq}")) for seq in range(1, 6)]
    raw = {"v": "1.2", "kind": "batch", "seq": 1, "host": "h1", "timestamp": 1,
           "items": [good[0], "not binary", good[2], good[3], good[4]],
           "containers": [["c1", "c1", "busybox", {}], ["id", "name", 5, {}],
                          ["c3", "c3", "busybox", {}]],
           # item 3 names the bad entry, item 4 no entry at all
           "item_containers": [0, 0, 1, 7, 2]}
    assert publisher.publish(msgpack.packb(raw, use_bin_type=True))
    (_, _, batch), = receive(sink, 1)
    assert isinstance(batch, wire.Batch) and batch.items == [good[0], good[4]]
    router = running.router
    host = router.collectors["h1"]
    assert (router.malformed, host.malformed, host.messages) == (3, 3, 2)
    # The bad items were read (their numbers taken): no hole in the collector's numbers.
    assert (host.sequence.last, host.sequence.gaps) == (5, 0)
    # A batch whose envelope is wrong is one malformed message; its numbers are a hole.
    assert publisher.publish(msgpack.packb({**raw, "seq": 6, "item_containers": [0]}))
    assert publisher.publish(wire.encode(synthetic_sample(11, "h1", "after")))
    receive(sink, 1)
    assert (router.malformed, host.malformed, host.sequence.gaps) == (4, 4, 5)
    sink.close()
    publisher.close()


class OneAtATime(Sink):
    """A user's sink as it was written before batches: one message a call."""

    name = "one-at-a-time"

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.got: list[tuple[str, int]] = []

    def write(self, sample: wire.ContainerStats) -> None:
        self.got.append((sample.host, sample.seq))


def test_old_and_new_collectors_reach_one_sink_through_one_router(running: InprocRouter) -> None:
    sink = OneAtATime()
    context = running.context
    socket = bus.sink_subscriber(context, running.publish, "all")
    publisher = linked_publisher(running, socket)
    worker = SinkWorker(sink, socket, report_interval=3600)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    old = bus.CollectorPublisher(context, running.listen)  # 1.1: single messages
    wait_for(lambda: old.publish(wire.encode(synthetic_sample(1, "old", "a"))), 10,
             "the old collector's link")
    batcher = BatchingPublisher(publisher, "new", max_items=4)
    for seq in range(1, 11):
        batcher.add(synthetic_sample(seq, "new", f"n{seq % 3}"))
        old.publish(wire.encode(synthetic_sample(seq + 1, "old", "a")))
    batcher.flush()
    wait_for(lambda: len(sink.got) == 21, 10, "every sample of both collectors")
    stop.set()
    thread.join(10)
    assert sorted(s for h, s in sink.got if h == "new") == list(range(1, 11))
    assert sorted(s for h, s in sink.got if h == "old") == list(range(1, 12))
    assert worker.counts.batches == 3 and worker.counts.samples == 21
    assert (worker.counts.gaps, worker.counts.malformed, worker.counts.sink_errors) == (0, 0, 0)
    assert publisher.counts.batches == 3 and publisher.counts.sent == 10 + 1  # + the probe
    old.close()
    publisher.close()
    socket.close()


def test_a_user_sink_gets_each_item_and_a_malformed_one_is_counted() -> None:
    sink = OneAtATime()
    runner = SinkWorkerThread(sink)
    try:
        items = [wire.encode(synthetic_sample(1, "h", "a")), b"\xc1 no",
                 msgpack.packb({"v": "1.2", "kind": "stats"}), 17,
                 wire.encode(synthetic_sample(5, "h", "b"))]
        payload = msgpack.packb({"v": "1.2", "kind": "batch", "seq": 1, "host": "h",
                                 "timestamp": 1, "items": items, "containers": None,
                                 "item_containers": None}, use_bin_type=True)
        runner.feed.send_frames(runner.feed.topic, bus.pack_sequence(1), payload)
        runner.feed.send_frames(runner.feed.topic, bus.pack_sequence(6),
                                wire.encode(synthetic_sample(6, "h", "c")))
        wait_for(lambda: len(sink.got) == 3, 10, "the good items and the message after")
        counts = runner.worker.counts
        assert sink.got == [("h", 1), ("h", 5), ("h", 6)]
        assert (counts.received, counts.batches, counts.samples, counts.malformed,
                counts.gaps) == (2, 1, 3, 3, 0)
    finally:
        runner.close()
