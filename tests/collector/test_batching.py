"""The collector's batches (collector/batching.py): bounds, numbering, container entries."""

from __future__ import annotations

import pytest
from support.samples import make_engine, make_event, make_stats

from statspout import bus, wire
from statspout.collector.batching import MIN_QUEUED_BATCHES, BatchingPublisher, queued_payloads


class Kept:
    counts = bus.PublishCounts()

    def __init__(self) -> None:
        self.payloads: list[tuple[bytes, int]] = []

    def publish(self, payload: bytes, messages: int = 1) -> bool:
        self.payloads.append((payload, messages))
        return True

    def decoded(self) -> list[wire.Message | wire.Batch]:
        return [wire.decode_any(payload) for payload, _ in self.payloads]


def test_a_burst_goes_as_one_batch_with_one_entry_per_container():
    kept = Kept()
    batcher = BatchingPublisher(kept, "test-host", max_items=100)
    messages = [make_stats(seq=1), make_stats(seq=2, id="other", name="db"),
                make_engine(seq=3, host="test-host"), make_event("stop", seq=4),
                make_stats(seq=5, labels={"changed": "1"})]
    for message in messages:
        batcher.add(message)
    assert kept.payloads == [] and len(batcher) == 5
    batcher.flush()
    (batch,) = kept.decoded()
    assert isinstance(batch, wire.Batch) and kept.payloads[0][1] == 5
    assert (batch.seq, batch.host) == (1, "test-host")
    assert batch.timestamp == max(m.timestamp for m in messages)
    assert [wire.decode(item) for item in batch.items] == messages
    web = [make_stats().id, "web", "nginx:1"]
    assert batch.containers == [[*web, make_stats().labels],
                                ["other", "db", "nginx:1", make_stats().labels],
                                [*web, {}],  # the event's labels differ: an entry of its own
                                [*web, {"changed": "1"}]]
    assert batch.item_containers == [0, 1, wire.NO_CONTAINER, 2, 3]
    batcher.flush()
    assert len(kept.payloads) == 1  # nothing gathered: nothing sent


def test_one_message_goes_alone_and_batches_off_sends_each_at_once():
    kept = Kept()
    batcher = BatchingPublisher(kept, "test-host", max_items=100)
    batcher.add(make_stats(seq=1))
    batcher.flush()
    assert kept.decoded() == [make_stats(seq=1)] and kept.payloads[0][1] == 1
    off = BatchingPublisher(kept, "test-host", max_items=1)
    off.add(make_stats(seq=2))
    assert kept.decoded()[-1] == make_stats(seq=2) and len(off) == 0


def test_batches_are_bounded_by_items_bytes_and_numbered_without_holes():
    kept = Kept()
    batcher = BatchingPublisher(kept, "test-host", max_items=3, max_bytes=1_000_000)
    for seq in (1, 2, 3, 4, 5, 7, 8):  # 6 was dropped before it: a new batch at 7
        batcher.add(make_stats(seq=seq))
    batcher.flush()
    sizes = [(b.seq, len(b.items)) if isinstance(b, wire.Batch) else (b.seq, 1)
             for b in kept.decoded()]
    assert sizes == [(1, 3), (4, 2), (7, 2)]
    one = len(wire.encode(make_stats()))
    small = Kept()
    batcher = BatchingPublisher(small, "test-host", max_items=100, max_bytes=3 * one + 1200)
    for seq in range(1, 8):
        batcher.add(make_stats(seq=seq))
    batcher.flush()
    assert [m for _, m in small.payloads] == [3, 3, 1]
    assert all(len(payload) <= 3 * one + 1200 for payload, _ in small.payloads)
    big = make_stats(seq=8, labels={"k": "v" * 4000})
    batcher.add(big)  # larger than the bound on its own: it goes alone
    batcher.flush()
    assert wire.decode_any(small.payloads[-1][0]) == big


def test_the_queue_to_the_router_is_kept_to_hwm_messages_in_batches():
    assert queued_payloads(10_000, 1) == 10_000
    assert queued_payloads(10_000, 1000) == MIN_QUEUED_BATCHES
    assert queued_payloads(100_000, 1000) == 100
    with pytest.raises(ValueError):
        BatchingPublisher(Kept(), "h", max_items=wire.MAX_BATCH_ITEMS + 1)
