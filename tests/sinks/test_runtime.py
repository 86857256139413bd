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
from statspout.sinks.base import Sink
from statspout.sinks.checkpoint import CheckpointFile, Position
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
