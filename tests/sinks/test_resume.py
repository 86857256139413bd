"""Resuming a route: holes filled by replay from a real router replay socket (the router's
ReplayStore behind a REP socket), repeats dropped, what is beyond the window counted exactly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import zmq
from support.feed import RouterFeed
from support.ports import free_port
from support.samples import make_state, make_stats
from support.waiting import wait_for

from statspout import bus, wire
from statspout.router.replay import ReplayLimits, ReplayStore
from statspout.sinks.base import Sink
from statspout.sinks.checkpoint import CheckpointFile, Position
from statspout.sinks.resume import ReplayClient, RouteResume
from statspout.sinks.runtime import SinkWorker

RUN = 0x1111
NEW_RUN = 0x2222


class ReplayServer:
    """A replay socket answering from a ReplayStore, in a thread; ``store`` may be swapped
    (a router restart) between requests."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.socket = bus.replay_server(self.context, "tcp://127.0.0.1:*")
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.store = ReplayStore(RUN, ReplayLimits())
        self.heads: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def publish(self, first: int, last: int, route: str = "all") -> None:
        """Record messages first..last as the router forwarding them would."""
        for seq in range(first, last + 1):
            self.store.record(route, seq, f"m{seq}".encode())
        self.heads[route] = last

    def _serve(self) -> None:
        while not self._stop.is_set():
            if self.socket.poll(50):
                frames = self.socket.recv_multipart()
                self.socket.send_multipart(
                    self.store.answer(frames, lambda route: self.heads.get(route, 0)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.socket.close(0)
        self.context.term()


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    made = ReplayServer()
    yield made
    made.close()


@pytest.fixture
def client(server: ReplayServer) -> Iterator[ReplayClient]:
    context = zmq.Context()
    made = ReplayClient(lambda: bus.replay_client(context, server.endpoint), timeout_ms=300)
    yield made
    made.close()
    context.term()


class Delivered(list):
    def __call__(self, position: Position, payload: bytes) -> None:
        self.append((position.seq, payload))


def test_a_hole_in_the_live_stream_is_filled_before_the_message_after_it(server, client):
    resume, got = RouteResume("all", client, None), Delivered()
    server.publish(1, 10)
    assert resume.admit(RUN, 1, got)
    assert resume.admit(RUN, 7, got)  # 2..6 were lost on the way: replayed first
    assert got == [(s, f"m{s}".encode()) for s in range(2, 7)]
    assert not resume.admit(RUN, 5, got)  # had already
    assert resume.counters() == {"replayed": 5, "duplicates": 1,
                                 "lost_beyond_replay": 0, "router_runs_seen": 0,
                                 "checkpoint_errors": 0}


def test_what_the_router_evicted_is_counted_exactly(server, client):
    # Room for m91..m99 (3 bytes each) and m100, 120 bytes of overhead each.
    server.store = ReplayStore(RUN, ReplayLimits(max_bytes=9 * 123 + 124))
    server.publish(1, 100)  # holds 91..100
    resume, got = RouteResume("all", client, None), Delivered()
    resume.admit(RUN, 1, got)
    resume.admit(RUN, 100, got)
    assert [seq for seq, _ in got] == list(range(91, 100))
    assert resume.lost_beyond_replay == 89  # 2..90


def test_a_restart_resumes_after_the_checkpoint(server, client, tmp_path):
    CheckpointFile(tmp_path, "s", "all").save(Position(RUN, 1500))
    server.publish(1, 2500)
    resume, got = RouteResume("all", client, CheckpointFile(tmp_path, "s", "all")), Delivered()
    resume.catch_up(got)  # two pages
    assert [seq for seq, _ in got] == list(range(1501, 2501))
    assert not resume.admit(RUN, 2500, got)  # the live stream overlaps: dropped
    assert resume.admit(RUN, 2501, got)


def test_a_checkpoint_of_another_router_run_fetches_all_the_new_run_holds(server, client,
                                                                          tmp_path):
    CheckpointFile(tmp_path, "s", "all").save(Position(RUN, 900))
    server.store = ReplayStore(NEW_RUN, ReplayLimits())
    server.publish(1, 30)
    resume, got = RouteResume("all", client, CheckpointFile(tmp_path, "s", "all")), Delivered()
    resume.catch_up(got)
    assert [seq for seq, _ in got] == list(range(1, 31))
    assert resume.router_runs_seen == 1 and resume.position == Position(NEW_RUN, 30)


def test_a_new_run_in_the_live_stream_is_fetched_from_its_start(server, client):
    resume, got = RouteResume("all", client, None), Delivered()
    resume.admit(RUN, 500, got)
    server.store = ReplayStore(NEW_RUN, ReplayLimits())
    server.publish(1, 4)
    assert resume.admit(NEW_RUN, 5, got)
    assert [seq for seq, _ in got] == [1, 2, 3, 4]
    assert resume.router_runs_seen == 1 and resume.lost_beyond_replay == 0


def test_a_router_that_does_not_answer_costs_one_timeout_then_holes_are_counted():
    context = zmq.Context()
    client = ReplayClient(  # nobody listens there
        lambda: bus.replay_client(context, f"tcp://127.0.0.1:{free_port()}"), timeout_ms=300)
    try:
        resume, got = RouteResume("all", client, None), Delivered()
        resume.admit(RUN, 1, got)
        resume.admit(RUN, 5, got)  # one request, no answer within 300 ms
        resume.admit(RUN, 9, got)  # within the quiet period: not asked again
        assert resume.lost_beyond_replay == 6 and client.failures == 1
        assert got == []
    finally:
        client.close()
        context.term()


def test_a_new_router_run_is_asked_at_once_even_after_a_failed_request(server):
    """A sink that started while the router was down must not count the new run's start as
    lost because its first request went unanswered."""
    context = zmq.Context()
    router_at = {"endpoint": f"tcp://127.0.0.1:{free_port()}"}  # nobody there yet
    client = ReplayClient(lambda: bus.replay_client(context, router_at["endpoint"]),
                          timeout_ms=300)
    try:
        resume, got = RouteResume("all", client, None), Delivered()
        resume.admit(RUN, 1, got)
        resume.admit(RUN, 3, got)  # unanswered: seq 2 lost, and a quiet period begins
        assert client.failures == 1 and resume.lost_beyond_replay == 1
        router_at["endpoint"] = server.endpoint  # the router is back, as a new run
        server.store = ReplayStore(NEW_RUN, ReplayLimits())
        server.publish(1, 5)
        assert resume.admit(NEW_RUN, 6, got)
        assert [seq for seq, _ in got] == [1, 2, 3, 4, 5]
        assert resume.lost_beyond_replay == 1
    finally:
        client.close()
        context.term()


def test_the_checkpoint_saves_only_what_the_sink_settled(tmp_path):
    checkpoint = CheckpointFile(tmp_path, "s", "all")
    resume, got = RouteResume("all", None, checkpoint), Delivered()
    for seq in range(1, 11):
        assert resume.admit(RUN, seq, got)
        resume.handed(Position(RUN, seq), is_sample=True)
    resume.save(unsettled=4)
    assert CheckpointFile(tmp_path, "s", "all").load() == Position(RUN, 6)



class HoldingSink(Sink):
    """A sink with a write buffer of its own: it holds the last ``holding`` samples."""

    name = "holding"

    def __init__(self, holding: int) -> None:
        super().__init__(SimpleNamespace())
        self.holding = holding
        self.seqs: list[int] = []

    def write(self, sample: wire.ContainerStats) -> None:
        self.seqs.append(sample.seq)

    def unsettled(self) -> int:
        return min(self.holding, len(self.seqs))


class HoldingStatesSink(HoldingSink):
    """One that buffers state messages with its samples (as the InfluxDB sink does)."""

    buffered_kinds = frozenset({"stats", "state"})

    def handle_state(self, state: wire.ContainerState) -> None:
        self.seqs.append(state.seq)


@pytest.mark.parametrize("last_kind", ["stats", "state"])
def test_the_worker_checkpoints_only_what_its_sink_settled(tmp_path, last_kind):
    """The last four messages held by the sink: samples, or states of a sink that buffers
    them too (``buffered_kinds``)."""
    feed, context = RouterFeed(), zmq.Context()
    socket = bus.sink_subscriber(context, feed.endpoint)
    feed.wait_for_subscriber()
    sink = (HoldingSink if last_kind == "stats" else HoldingStatesSink)(holding=4)
    checkpoint = CheckpointFile(tmp_path, "holding", "all")
    worker = SinkWorker(sink, socket, report_interval=3600,
                        resume=RouteResume("all", None, checkpoint))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        topic = bus.routed_topic("all", RUN)
        for seq in range(1, 11):
            message = make_state(seq=seq) if seq > 6 and last_kind == "state" else make_stats(
                seq=seq)
            feed.send_frames(topic, bus.pack_sequence(seq), wire.encode(message))
        # Flushed about once a second: samples 7..10 are still in the sink's buffer.
        wait_for(lambda: CheckpointFile(tmp_path, "holding", "all").load(), 10,
                 "the first checkpoint")
        assert CheckpointFile(tmp_path, "holding", "all").load() == Position(RUN, 6)
        sink.holding = 0
    finally:
        stop.set()
        thread.join(10)
        socket.close(0)
        context.term()
        feed.close()
    assert CheckpointFile(tmp_path, "holding", "all").load() == Position(RUN, 10)
