"""A collector's resend to a new router: the sink worker drops what it handed on already
(sinks/recent.py), keeps a restarted collector's messages, and still moves its checkpoint."""

from __future__ import annotations

from types import SimpleNamespace

import zmq
from support.feed import RouterFeed
from support.samples import make_stats

from statspout import bus, wire
from statspout.sinks.base import Sink
from statspout.sinks.checkpoint import CheckpointFile, Position
from statspout.sinks.recent import RecentMessages, message_key
from statspout.sinks.resume import RouteResume
from statspout.sinks.runtime import SinkWorker

RUN = 0x1111
NEW_RUN = 0x2222


class SeqSink(Sink):
    """Remembers the collector seq of each sample it is given."""

    name = "seqs"

    def __init__(self) -> None:
        super().__init__(SimpleNamespace())
        self.seqs: list[int] = []

    def write(self, sample: wire.ContainerStats) -> None:
        self.seqs.append(sample.seq)


def test_recent_messages_are_bounded_and_count_repeats() -> None:
    recent = RecentMessages(limit=3)
    assert [recent.is_repeat(("h", seq, 7, 0)) for seq in (1, 2, 3)] == [False] * 3
    assert recent.is_repeat(("h", 2, 7, 0))  # seen lately: a repeat, and now the newest
    assert not recent.is_repeat(("h", 4, 7, 0))  # over the bound: key 1 is forgotten
    assert len(recent) == 3
    assert not recent.is_repeat(("h", 1, 7, 0))
    assert recent.is_repeat(("h", 2, 7, 0)) and recent.repeats == 2


def test_a_resent_message_is_dropped_under_a_new_router_run_and_the_checkpoint_moves_on(
        tmp_path) -> None:
    feed, context = RouterFeed(), zmq.Context()
    socket = bus.sink_subscriber(context, feed.endpoint)
    sink = SeqSink()
    worker = SinkWorker(sink, socket, report_interval=3600,
                        resume=RouteResume("all", None, CheckpointFile(tmp_path, "s", "all")))
    try:
        old, new = bus.routed_topic("all", RUN), bus.routed_topic("all", NEW_RUN)
        for number, seq in enumerate((1, 2, 3), start=1):  # the router that will be killed
            worker.handle_frames([old, bus.pack_sequence(number),
                                  wire.encode(make_stats(seq=seq))])
        # The new router: the collector's resend (2, 3: had already; 4: lost with the old
        # router), then a restarted collector numbering from 1 with its own timestamps.
        restarted = make_stats(seq=2).timestamp + 10**9
        for number, message in enumerate(
                (make_stats(seq=2), make_stats(seq=4), make_stats(seq=1, timestamp=restarted),
                 make_stats(seq=2, timestamp=restarted), make_stats(seq=3)), start=1):
            worker.handle_frames([new, bus.pack_sequence(number), wire.encode(message)])
        assert sink.seqs == [1, 2, 3, 4, 1, 2]
        assert worker.recent.repeats == 2
        worker.checkpoint()  # the last message was a repeat: it is settled all the same
        assert CheckpointFile(tmp_path, "s", "all").load() == Position(NEW_RUN, 5)
    finally:
        socket.close(0)
        context.term()
        feed.close()


def test_two_different_messages_under_one_identity_are_both_kept() -> None:
    one, other = make_stats(name="a"), make_stats(name="b")
    payloads = wire.encode(one), wire.encode(other)
    recent = RecentMessages()
    assert not recent.is_repeat(message_key(one, payloads[0]))
    assert not recent.is_repeat(message_key(other, payloads[1]))
