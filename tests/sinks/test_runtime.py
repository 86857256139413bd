"""The shared sink worker: decoding, dispatch, counting, surviving bad input and sink bugs."""

from __future__ import annotations

import logging
import subprocess
import threading
from types import SimpleNamespace

import msgpack
import pytest
import zmq
from support.feed import SinkWorkerThread
from support.processes import program
from support.samples import make_event, make_state, make_stats
from support.waiting import wait_for

from statspout import bus, wire
from statspout.replay import ReplayAnswer
from statspout.sinks.base import Sink
from statspout.sinks.checkpoint import CheckpointFile, Position
from statspout.sinks.delivery import DeliveringSink, Delivery, DeliverySettings, Failure
from statspout.sinks.resume import RouteResume
from statspout.sinks.runtime import SinkWorker


class RecordingSink(Sink):
    """A sink that remembers what it got, and fails on a sample named "boom"."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__(SimpleNamespace())
        self.samples: list[wire.ContainerStats] = []
        self.events: list[wire.ContainerEvent] = []
        self.flushes = 0

    def write(self, sample: wire.ContainerStats) -> None:
        if sample.name == "boom":
            raise RuntimeError("sink bug")
        self.samples.append(sample)

    def handle_event(self, event: wire.ContainerEvent) -> None:
        self.events.append(event)

    def flush(self) -> None:
        self.flushes += 1


@pytest.fixture
def worker_and_publisher():
    """A SinkWorker in a thread, subscribed over real TCP to a router's end we control."""
    sink = RecordingSink()
    runner = SinkWorkerThread(sink)
    yield runner.worker, sink, runner.feed.send_frames
    runner.close()


def test_samples_and_events_reach_the_sink(worker_and_publisher):
    worker, sink, send = worker_and_publisher
    topic = bus.topic_for("all")
    send(topic, bus.pack_sequence(2), wire.encode(make_stats(seq=5)))
    send(topic, bus.pack_sequence(3), wire.encode(make_event("stop", seq=6)))
    wait_for(lambda: sink.events, 5, "the event")
    assert [s.seq for s in sink.samples] == [5]
    assert sink.events[0].action == "stop"
    assert worker.counts.gaps == 0


def test_malformed_messages_and_sink_errors_are_counted_and_skipped(worker_and_publisher):
    worker, sink, send = worker_and_publisher
    topic = bus.topic_for("all")
    send(topic, bus.pack_sequence(2), b"\xc1 not msgpack")
    send(topic, b"short", wire.encode(make_stats()))
    send(topic, bus.pack_sequence(3), wire.encode(make_stats(name="boom")))
    send(topic, bus.pack_sequence(4), wire.encode(make_stats(name="after")))
    wait_for(lambda: sink.samples, 5, "the sample after the bad ones")
    assert [s.name for s in sink.samples] == ["after"]
    assert worker.counts.malformed == 2
    assert worker.counts.sink_errors == 1


def test_gaps_in_the_router_numbering_are_counted(worker_and_publisher):
    worker, sink, send = worker_and_publisher
    topic = bus.topic_for("all")
    send(topic, bus.pack_sequence(2), wire.encode(make_stats(name="a")))
    send(topic, bus.pack_sequence(7), wire.encode(make_stats(name="b")))
    wait_for(lambda: len(sink.samples) == 2, 5, "both samples")
    assert worker.counts.gaps == 4


def test_other_routes_are_not_received(worker_and_publisher):
    _worker, sink, send = worker_and_publisher
    send(bus.topic_for("allx"), bus.pack_sequence(1), wire.encode(make_stats(name="other")))
    send(bus.topic_for("all"), bus.pack_sequence(2), wire.encode(make_stats(name="ours")))
    wait_for(lambda: sink.samples, 5, "our sample")
    assert [s.name for s in sink.samples] == ["ours"]


def test_stop_flushes_the_sink(endpoints):
    context = zmq.Context()
    sink = RecordingSink()
    subscriber = bus.sink_subscriber(context, endpoints[1])
    stop = threading.Event()
    stop.set()
    SinkWorker(sink, subscriber, report_interval=3600).run(stop)
    assert sink.flushes == 1
    subscriber.close()
    context.term()


# Issue 8: what a sink used to die of, count wrongly, or log without end.


def test_an_unhashable_kind_is_malformed_and_the_worker_goes_on(worker_and_publisher):
    worker, sink, send = worker_and_publisher
    topic = bus.topic_for("all")
    send(topic, bus.pack_sequence(2), msgpack.packb({"v": "1.0", "kind": [1]}))  # TypeError before
    send(topic, bus.pack_sequence(3), msgpack.packb({"v": "².0"}))
    send(topic, bus.pack_sequence(4), wire.encode(make_stats(name="after")))
    wait_for(lambda: sink.samples, 5, "the sample after the bad ones")
    assert worker.counts.malformed == 2


def test_malformed_frames_are_not_gaps(worker_and_publisher):
    worker, sink, send = worker_and_publisher
    topic = bus.topic_for("all")
    send(topic, bus.pack_sequence(2), wire.encode(make_stats(name="a")))
    send(topic, bus.pack_sequence(3), b"\xc1 not msgpack")
    send(topic, bus.pack_sequence(4), msgpack.packb(make_stats().to_dict() | {"seq": -1}))
    send(topic, bus.pack_sequence(5), wire.encode(make_stats(name="b")))
    wait_for(lambda: len(sink.samples) == 2, 5, "both good samples")
    assert (worker.counts.malformed, worker.counts.gaps) == (2, 0)


def test_duplicates_are_dropped_counted_and_logged_throttled(worker_and_publisher, caplog):
    worker, sink, send = worker_and_publisher
    topic = bus.topic_for("all")
    payload = wire.encode(make_stats(name="once"))
    with caplog.at_level(logging.INFO, "statspout.sink"):
        send(topic, bus.pack_sequence(2), payload)
        for _ in range(200):  # before: 200 duplicate outputs and 201 log lines
            send(topic, bus.pack_sequence(2), payload)
        send(topic, bus.pack_sequence(3), wire.encode(make_stats(name="next")))
        wait_for(lambda: len(sink.samples) == 2, 5, "the sample after the duplicates")
    assert [s.name for s in sink.samples] == ["once", "next"]
    assert (worker.counts.duplicates, worker.counts.gaps, worker.counts.restarts) == (200, 0, 0)
    assert len(caplog.records) <= 2


def test_restart_lines_are_throttled_and_restarts_counted(worker_and_publisher, caplog):
    worker, sink, send = worker_and_publisher
    topic = bus.topic_for("all")
    with caplog.at_level(logging.INFO, "statspout.sink"):
        # Numbers going down, each a different message: every one is a new numbering.
        for number in range(300, 100, -1):
            send(topic, bus.pack_sequence(number), wire.encode(make_stats(seq=number)))
        wait_for(lambda: len(sink.samples) == 200, 5, "every sample")
    assert (worker.counts.restarts, worker.counts.gaps, worker.counts.duplicates) == (199, 0, 0)
    restarts = [r for r in caplog.records if "restarted" in r.getMessage()]
    assert 1 <= len(restarts) <= 2


def test_a_forged_huge_number_does_not_poison_the_gap_count(worker_and_publisher):
    worker, sink, send = worker_and_publisher
    topic = bus.topic_for("all")
    for number in (2, 2**64 - 1, 3, 4):  # a route number is unsigned 64-bit
        send(topic, bus.pack_sequence(number), wire.encode(make_stats(name=f"n{number}")))
    wait_for(lambda: len(sink.samples) == 4, 5, "every sample")
    assert (worker.counts.gaps, worker.counts.restarts) == (0, 2)


def test_max_message_bytes_below_its_minimum_exits_2_in_one_line():
    result = subprocess.run([program("statspout-sink"), "stdout", "--max-message-bytes", "10"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--max-message-bytes" in result.stderr


def test_kinds_a_sink_does_not_handle_are_counted_and_skipped():
    """Wire 1.1's state and engine messages: to handle_state/handle_engine when the sink has
    them, else counted as skipped_kinds (RecordingSink has neither)."""
    state = wire.ContainerState(
        seq=1, host="h", id="c0ffee", name="web", image="busybox", labels={}, timestamp=1,
        interval_s=1.0, status="exited", health=None, health_failing_streak=None,
        restart_count=0, exit_code=3, oom_killed=False, started_at=1, finished_at=2, pid=0)
    engine = wire.EngineInfo(
        seq=2, host="h", timestamp=2, interval_s=1.0, engine="docker", server_version="20.10",
        containers_running=1, containers_paused=0, containers_stopped=1, images=1, cpus=2,
        memory_total=2**34)
    frames = [[bus.topic_for("all"), bus.pack_sequence(n), wire.encode(m)]
              for n, m in ((1, state), (2, engine))]

    skipping = SinkWorker(RecordingSink(), None)  # type: ignore[arg-type] - no socket needed
    for message in frames:
        skipping.handle_frames(message)
    assert (skipping.counts.states, skipping.counts.engines) == (1, 1)
    assert skipping.counts.skipped_kinds == 2 and skipping.counts.malformed == 0

    class StateSink(RecordingSink):
        def handle_state(self, state: wire.ContainerState) -> None:
            self.events.append(state)  # type: ignore[arg-type]

    sink = StateSink()
    handling = SinkWorker(sink, None)  # type: ignore[arg-type]
    for message in frames:
        handling.handle_frames(message)
    assert sink.events == [state] and handling.counts.skipped_kinds == 1


def test_states_a_sink_buffers_hold_the_checkpoint_back_and_skipped_ones_do_not(tmp_path):
    """The checkpoint counts a sink's buffered_kinds as unsettled: a state message a database
    sink still holds is not checkpointed past; one a sink skips never holds it back."""
    class HoldingStates(RecordingSink):
        buffered_kinds = frozenset({"stats", "state"})

        def handle_state(self, state: wire.ContainerState) -> None:
            self.events.append(state)  # type: ignore[arg-type]

        def unsettled(self) -> int:
            return 1  # the latest state is still in its buffer

    run = 7
    topic = bus.routed_topic("all", run)
    for sink, expected in ((HoldingStates(), 1), (RecordingSink(), 2)):
        checkpoint = CheckpointFile(tmp_path, sink.name + str(expected), "all")
        worker = SinkWorker(sink, None,  # type: ignore[arg-type] - no socket needed
                            resume=RouteResume("all", None, checkpoint))
        worker.handle_frames([topic, bus.pack_sequence(1), wire.encode(make_stats(1))])
        worker.handle_frames([topic, bus.pack_sequence(2), wire.encode(make_state(2))])
        worker.checkpoint()
        # Holding the state (seq 2) unsettled: settled up to 1; skipping it: past it.
        assert checkpoint.load() == Position(run, expected)


# Batches (wire 1.2): decoded once, handed to the sink in one call, counted per item.


def routed_batch(messages: list[object], *, seq: int = 1) -> bytes:
    """A batch as the router forwards it: items without container entries."""
    items = [m if isinstance(m, bytes) else wire.encode(m) for m in messages]  # type: ignore
    return wire.encode_batch(wire.Batch(seq=seq, host="h", timestamp=1, items=items))


class BatchTakingSink(RecordingSink):
    """A sink that takes a router message's messages at once."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[wire.Message]] = []

    def handle_batch(self, messages) -> None:
        self.calls.append(list(messages))


def test_a_batch_reaches_the_sink_in_one_call_counted_per_item():
    sink = BatchTakingSink()
    worker = SinkWorker(sink, None)  # type: ignore[arg-type] - no socket needed
    topic = bus.topic_for("all")
    stats, event = make_stats(seq=1), make_event("stop", seq=2)
    worker.handle_frames([topic, bus.pack_sequence(1),
                          routed_batch([stats, event, make_state(3), b"\xc1", stats])])
    assert sink.calls == [[stats, event, stats]]  # the state is a kind it does not handle
    counts = worker.counts
    assert (counts.received, counts.batches, counts.samples, counts.events, counts.states,
            counts.skipped_kinds, counts.malformed) == (1, 1, 2, 1, 1, 1, 1)
    # The route's numbers count items: 1..5 were this batch, 6 follows without a gap.
    worker.handle_frames([topic, bus.pack_sequence(6), wire.encode(make_stats(seq=6))])
    worker.handle_frames([topic, bus.pack_sequence(9), routed_batch([stats, stats])])
    assert (counts.gaps, counts.samples) == (2, 5)
    # The same batch again under its number: a duplicate of its two samples.
    worker.handle_frames([topic, bus.pack_sequence(9), routed_batch([stats, stats])])
    assert (counts.duplicates, counts.samples, len(sink.calls)) == (2, 5, 3)


def test_a_sink_written_one_message_at_a_time_gets_every_item_and_each_failure_counts():
    sink = RecordingSink()  # write() and handle_event() only, as before batches
    worker = SinkWorker(sink, None)  # type: ignore[arg-type] - no socket needed
    worker.handle_frames([bus.topic_for("all"), bus.pack_sequence(1), routed_batch(
        [make_stats(name="a"), make_stats(name="boom"), make_event("stop"),
         make_stats(name="boom"), make_stats(name="b")])])
    assert [s.name for s in sink.samples] == ["a", "b"] and len(sink.events) == 1
    assert (worker.counts.sink_errors, worker.counts.samples) == (2, 4)


def test_a_checkpoint_within_a_batch_resumes_after_it(tmp_path):
    """A sink that still holds the last two samples of a batch checkpoints before them; after
    a restart the router's replay (the whole batch) gives it only those two, and a live copy
    of the batch nothing."""
    run = 5
    topic = bus.routed_topic("all", run)
    batch = routed_batch([make_stats(seq=n, name=f"s{n}") for n in range(1, 6)])

    class Holding(RecordingSink):
        def unsettled(self) -> int:
            return 2

    checkpoint = CheckpointFile(tmp_path, "holding", "all")
    first = SinkWorker(Holding(), None,  # type: ignore[arg-type]
                       resume=RouteResume("all", None, checkpoint))
    first.handle_frames([topic, bus.pack_sequence(1), batch])
    first.checkpoint()
    assert checkpoint.load() == Position(run, 3)

    class Replaying:
        """The router's replay socket, as RouteResume asks it (one page, the whole batch)."""

        def fetch(self, route: str, first: int) -> ReplayAnswer:
            assert (route, first) == ("all", 4)
            return ReplayAnswer(run, 1, 5, [(1, batch)])

    sink = RecordingSink()
    resume = RouteResume("all", Replaying(),  # type: ignore[arg-type] - a stand-in client
                         CheckpointFile(tmp_path, "holding", "all"))
    second = SinkWorker(sink, None, resume=resume)  # type: ignore[arg-type]
    resume.catch_up(second._replayed)
    assert [s.name for s in sink.samples] == ["s4", "s5"]
    assert resume.counters()["replayed"] == 2 and resume.position == Position(run, 5)
    second.handle_frames([topic, bus.pack_sequence(1), batch])  # the live copy: all had
    second.handle_frames([topic, bus.pack_sequence(6), wire.encode(make_stats(name="s6"))])
    assert [s.name for s in sink.samples] == ["s4", "s5", "s6"]
    assert resume.counters()["duplicates"] == 5


def test_a_live_batch_overlapping_the_checkpoint_hands_only_what_follows_it(tmp_path):
    run = 5
    checkpoint = CheckpointFile(tmp_path, "s", "all")
    checkpoint.save(Position(run, 3))
    sink = RecordingSink()
    resume = RouteResume("all", None, CheckpointFile(tmp_path, "s", "all"))
    worker = SinkWorker(sink, None, resume=resume)  # type: ignore[arg-type]
    resume.catch_up(worker._replayed)  # no replay socket: the live stream decides
    worker.handle_frames([bus.routed_topic("all", run), bus.pack_sequence(2), routed_batch(
        [make_stats(seq=n, name=f"s{n}") for n in range(2, 7)])])
    assert [s.name for s in sink.samples] == ["s4", "s5", "s6"]
    assert resume.counters()["duplicates"] == 2 and resume.position == Position(run, 6)


def test_a_delivering_sink_buffers_a_batch_at_once_with_exact_counts():
    class Store(DeliveringSink):
        name = "store"

        def write_batch(self, batch: list) -> None:
            raise AssertionError("not started")

        def handle_state(self, state: wire.ContainerState) -> None:
            self.deliver(state)

    settings = SimpleNamespace(buffer_size=4, batch_size=100, flush_interval=60.0,
                               close_timeout=0.0, max_backoff=1.0)
    sink = Store(settings, lambda exc: Failure(False, str(exc)))
    puts: list[int] = []
    original = sink._delivery.put_many
    sink._delivery.put_many = (  # type: ignore[method-assign] - counting the calls
        lambda items: (puts.append(len(items)), original(items)))
    worker = SinkWorker(sink, None)  # type: ignore[arg-type] - no socket needed
    worker.handle_frames([bus.topic_for("all"), bus.pack_sequence(1), routed_batch(
        [make_stats(seq=1), make_state(2), make_event("stop", seq=3), make_stats(seq=4),
         make_stats(seq=5), make_state(6)])])
    assert puts == [5]  # one buffer operation for the router message
    counts = sink.counters()
    # Five put into a buffer of four: the oldest dropped, as five single puts would.
    assert (counts["received"], counts["dropped"], counts["buffered"]) == (5, 1, 4)
    single = Delivery(lambda batch: None, lambda exc: Failure(False, ""),
                      DeliverySettings(buffer_size=4), name="single")
    for item in range(5):
        single.put(item)
    assert {k: single.counters()[k] for k in ("received", "dropped", "buffered")} == {
        "received": 5, "dropped": 1, "buffered": 4}
