"""The router's replay buffer (bounds by bytes and age, pages by number), its answers to the
replay socket, and the start gate."""

from __future__ import annotations

import msgpack
import pytest

from statspout.replay import PAGE_MESSAGES, ReplayAnswer, ReplayRequest
from statspout.router.replay import (
    ENTRY_OVERHEAD_BYTES,
    ReplayLimits,
    ReplayStore,
    RouteBuffer,
    StartGate,
)


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def filled(count: int, limits: ReplayLimits, clock: Clock, size: int = 100) -> RouteBuffer:
    buffer = RouteBuffer(limits, clock)
    for seq in range(1, count + 1):
        buffer.append(seq, bytes([seq % 256]) * size)
    return buffer


def test_the_byte_limit_evicts_the_oldest_and_counts_them():
    per_message = 100 + ENTRY_OVERHEAD_BYTES
    buffer = filled(50, ReplayLimits(max_bytes=10 * per_message, max_seconds=60), Clock())
    assert (len(buffer), buffer.oldest, buffer.newest) == (10, 41, 50)
    assert buffer.evicted == 40
    assert buffer.bytes == 10 * per_message


def test_the_age_limit_evicts_what_is_older():
    clock = Clock()
    buffer = filled(5, ReplayLimits(max_bytes=10**9, max_seconds=10), clock)
    clock.now += 5
    buffer.append(6, b"x")
    clock.now += 6  # 1..5 are 11 s old now, 6 is 6 s old
    buffer.expire()
    assert (buffer.oldest, buffer.newest, buffer.evicted) == (6, 6, 5)


def test_a_page_starts_at_the_first_held_number_and_is_bounded():
    buffer = filled(3000, ReplayLimits(max_bytes=10**9, max_seconds=60), Clock(), size=10)
    page = buffer.page(1500, limit=5)
    assert [seq for seq, _ in page] == [1500, 1501, 1502, 1503, 1504]
    assert len(buffer.page(1, limit=10**6)) == PAGE_MESSAGES
    assert buffer.page(3001, limit=10) == []


def test_a_page_after_evictions_begins_at_the_oldest_held():
    per_message = 10 + ENTRY_OVERHEAD_BYTES
    buffer = filled(200, ReplayLimits(max_bytes=50 * per_message, max_seconds=60), Clock(),
                    size=10)
    assert buffer.page(3, limit=2)[0][0] == 151


def test_the_store_answers_with_its_run_oldest_and_head():
    store = ReplayStore(0xABC, ReplayLimits(max_bytes=10**9, max_seconds=60), Clock())
    for seq in range(1, 11):
        store.record("all", seq, f"payload {seq}".encode())
    answer = ReplayAnswer.decode(store.answer([ReplayRequest("all", 8).encode()],
                                              lambda route: 10))
    assert (answer.run, answer.oldest, answer.head) == (0xABC, 1, 10)
    assert answer.messages == [(8, b"payload 8"), (9, b"payload 9"), (10, b"payload 10")]
    unknown = ReplayAnswer.decode(store.answer([ReplayRequest("other", 1).encode()],
                                               lambda route: 0))
    assert (unknown.oldest, unknown.messages) == (None, [])
    assert store.status()["routes"]["all"] == {"messages": 10, "bytes": store._routes[
        "all"].bytes, "oldest_seq": 1, "newest_seq": 10, "evicted": 0}


@pytest.mark.parametrize("frames", [
    [b"\xc1"],
    [msgpack.packb([1])],
    [msgpack.packb({"v": 1, "op": "replay", "route": [1], "from": 1, "limit": 1})],
    [msgpack.packb({"v": 1, "op": "replay", "route": "all", "from": -1, "limit": 1})],
    [msgpack.packb({"v": 1, "op": "replay", "route": "all", "from": 2**63, "limit": 1})],
    [msgpack.packb({"v": 2, "op": "replay", "route": "all", "from": 1, "limit": 1})],
    [b"a", b"b"],
])
def test_a_bad_request_gets_an_error_answer_and_is_counted(frames):
    store = ReplayStore(1, ReplayLimits(), Clock())
    answer = ReplayAnswer.decode(store.answer(frames, lambda route: 0))
    assert answer.error and answer.messages == []
    assert store.status()["bad_requests"] == 1


def test_the_gate_opens_on_a_subscription_or_after_the_grace():
    clock = Clock()
    gate = StartGate(5.0, clock)
    assert not gate.check()
    clock.now += 2
    gate.subscribed()
    assert gate.is_open and gate.opened_by == "a subscription" and gate.held_seconds == 2.0
    late = StartGate(5.0, clock)
    clock.now += 5
    assert late.check() and late.opened_by == "the grace period"
    assert StartGate(0, clock).is_open


def test_a_batch_is_held_under_the_numbers_of_its_items_and_paged_from_any_of_them():
    per_message = 100 + ENTRY_OVERHEAD_BYTES
    clock = Clock()
    buffer = RouteBuffer(ReplayLimits(max_bytes=3 * per_message, max_seconds=60), clock)
    buffer.append(1, b"a" * 100, count=5)  # numbers 1..5
    buffer.append(6, b"b" * 100)  # a single message: 6
    buffer.append(7, b"c" * 100, count=10)  # 7..16
    assert (len(buffer), buffer.oldest, buffer.newest) == (16, 1, 16)
    assert buffer.page(3, 10) == [(1, b"a" * 100), (6, b"b" * 100), (7, b"c" * 100)]
    assert buffer.page(6, 10)[0] == (6, b"b" * 100)
    assert buffer.page(16, 10) == [(7, b"c" * 100)]  # the batch holding the last number
    assert buffer.page(17, 10) == []
    buffer.append(17, b"d" * 100, count=3)  # over the byte limit: the first batch goes
    assert (buffer.oldest, buffer.newest, buffer.evicted) == (6, 19, 5)  # evicted in numbers
    assert buffer.page(1, 10)[0] == (6, b"b" * 100)  # from the oldest held on
    clock.now += 61
    buffer.expire()
    assert (len(buffer), buffer.evicted) == (0, 19)


def test_a_replay_answer_carries_whole_batches_by_their_first_number():
    store = ReplayStore(9, ReplayLimits())
    store.record("all", 1, b"first batch", count=4)
    store.record("all", 5, b"second batch", count=2)
    answer = ReplayAnswer.decode(store.answer([ReplayRequest("all", 3).encode()],
                                              lambda route: 6))
    assert (answer.oldest, answer.head) == (1, 6)
    assert answer.messages == [(1, b"first batch"), (5, b"second batch")]
    assert store.status()["routes"]["all"]["messages"] == 6
