"""The delivery machinery with a fake database: batching, retries, drop-oldest, close."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

import pytest

from statspout.sinks.delivery import (
    Delivery,
    DeliverySettings,
    Failure,
    PartialWrite,
    backoff_delay,
    reason_key,
)


class Unreachable(Exception):
    pass


class Refused(Exception):
    pass


class BadSample(Exception):
    pass


def classify(exc: Exception) -> Failure:
    if isinstance(exc, Unreachable):
        return Failure(True, "unreachable")
    if isinstance(exc, BadSample):
        return Failure(False, f"bad sample: {exc}", split=True)
    return Failure(False, f"refused: {exc}")


class FakeDatabase:
    """Records confirmed batches; fails while ``down`` is set (retryable) or always with
    ``refuse`` (permanent)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.attempts = 0
        self.down = threading.Event()
        self.refuse = False
        self.bad: dict[int, str] = {}  # item → why the database refuses any batch holding it
        self.partly: dict[int, int] = {}  # item → points of it the database drops, storing it
        self.lock = threading.Lock()

    def write_batch(self, batch: list[int]) -> None:
        with self.lock:
            self.attempts += 1
        if self.refuse:
            raise Refused("bad token")
        bad = [item for item in batch if item in self.bad]
        if bad:
            raise BadSample(f"{self.bad[bad[0]]} (item {bad[0]})")
        if self.down.is_set():
            raise Unreachable()
        with self.lock:
            self.batches.append(list(batch))
        dropped = sum(self.partly.get(item, 0) for item in batch)
        if dropped:
            raise PartialWrite(f"partial write: dropped={dropped}", rejected_points=dropped)

    @property
    def items(self) -> list[int]:
        with self.lock:
            return [item for batch in self.batches for item in batch]


def wait_until(condition: Callable[[], bool], deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.01)


def make(db: FakeDatabase, **settings: float) -> Delivery[int]:
    defaults = dict(buffer_size=1000, batch_size=10, flush_interval=60.0, close_timeout=5.0,
                    max_backoff=0.05)
    return Delivery(db.write_batch, classify, DeliverySettings(**{**defaults, **settings}),
                    name="fake", rng=random.Random(1))


def test_full_batches_are_written_by_size_and_the_rest_at_close() -> None:
    db = FakeDatabase()
    delivery = make(db, batch_size=10, flush_interval=60.0)
    delivery.start()
    for item in range(25):
        delivery.put(item)
    wait_until(lambda: len(db.items) == 20)
    assert db.batches == [list(range(10)), list(range(10, 20))]
    assert delivery.counters()["buffered"] == 5
    assert delivery.close() == 0
    assert db.batches[-1] == list(range(20, 25))
    counts = delivery.counters()
    assert (counts["received"], counts["written"], counts["unflushed"]) == (25, 25, 0)


def test_a_partial_batch_is_written_after_the_flush_interval() -> None:
    db = FakeDatabase()
    delivery = make(db, batch_size=1000, flush_interval=0.05)
    delivery.start()
    for item in range(3):
        delivery.put(item)
    wait_until(lambda: db.items == [0, 1, 2])
    assert delivery.counters()["written"] == 3
    delivery.close()


def test_while_unreachable_samples_stay_buffered_and_go_out_once_in_order() -> None:
    db = FakeDatabase()
    db.down.set()
    delivery = make(db, batch_size=4, flush_interval=0.01)
    delivery.start()
    for item in range(10):
        delivery.put(item)
    wait_until(lambda: delivery.counters()["retries"] >= 3)
    # Nothing confirmed, so nothing left the buffer.
    assert delivery.counters()["buffered"] == 10
    assert delivery.counters()["written"] == 0
    db.down.clear()
    wait_until(lambda: delivery.counters()["written"] == 10)
    assert db.items == list(range(10))
    assert delivery.counters()["dropped"] == 0
    delivery.close()


def test_a_full_buffer_drops_the_oldest_and_counts_them() -> None:
    db = FakeDatabase()
    delivery = make(db, buffer_size=5, batch_size=100, flush_interval=0.01)
    for item in range(12):  # before the writer starts: nothing can be in flight
        delivery.put(item)
    assert delivery.counters()["dropped"] == 7
    assert delivery.counters()["buffered"] == 5
    delivery.start()
    wait_until(lambda: delivery.counters()["written"] == 5)
    assert db.items == [7, 8, 9, 10, 11]
    delivery.close()


def test_dropping_during_an_outage_keeps_the_newest_in_order_and_loses_none_uncounted() -> None:
    db = FakeDatabase()
    db.down.set()
    delivery = make(db, buffer_size=20, batch_size=5, flush_interval=0.01)
    delivery.start()
    for item in range(200):
        delivery.put(item)
        if item % 20 == 0:
            wait_until(lambda: db.attempts > 0)
    db.down.clear()
    wait_until(lambda: delivery.counters()["buffered"] == 0)
    counts = delivery.counters()
    written = db.items
    assert counts["written"] == len(written)
    assert counts["written"] + counts["dropped"] == 200
    assert written == sorted(set(written))  # in order, none twice
    assert written[-20:] == list(range(180, 200))  # the newest survive
    delivery.close()


def test_a_permanent_error_gives_the_batch_up_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = FakeDatabase()
    db.refuse = True
    delivery = make(db, batch_size=2, flush_interval=0.01)
    delivery.start()
    with caplog.at_level(logging.DEBUG, logger="statspout.sink.fake"):
        for item in range(6):
            delivery.put(item)
        wait_until(lambda: delivery.counters()["failed_batches"] == 3)
        delivery.close()
    counts = delivery.counters()
    assert counts["rejected"] == 6 and counts["written"] == 0 and counts["retries"] == 0
    assert db.attempts == 3  # each batch tried once: no loop on an error retrying cannot fix
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "bad token" in errors[0].getMessage()


def test_close_gives_up_at_its_timeout_and_counts_what_it_could_not_write() -> None:
    db = FakeDatabase()
    db.down.set()
    delivery = make(db, batch_size=3, flush_interval=0.01)
    delivery.start()
    for item in range(7):
        delivery.put(item)
    wait_until(lambda: db.attempts >= 1)
    assert delivery.close(timeout=0.2) == 7
    assert delivery.counters()["unflushed"] == 7


def test_close_writes_everything_buffered_when_the_database_answers() -> None:
    db = FakeDatabase()
    delivery = make(db, batch_size=1000, flush_interval=3600.0)
    delivery.start()
    for item in range(7):
        delivery.put(item)
    assert delivery.close(timeout=5.0) == 0
    assert db.items == list(range(7))


def test_backoff_grows_exponentially_with_jitter_up_to_the_maximum() -> None:
    rng = random.Random(7)
    retry = Failure(True, "down")
    delays = [backoff_delay(n, retry, 8.0, rng) for n in range(1, 10)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) > 4.0  # reached the cap region
    assert len({round(d, 6) for d in delays[4:]}) > 1  # jitter: not all equal at the cap


def test_retry_after_from_the_server_wins_over_backoff() -> None:
    rng = random.Random(7)
    assert backoff_delay(1, Failure(True, "429", retry_after=7.0), 2.0, rng) == 7.0
    assert backoff_delay(5, Failure(True, "503", retry_after=0.0), 30.0, rng) == 0.0


def test_a_bad_sample_costs_only_itself_the_batch_is_split_to_find_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = FakeDatabase()
    db.bad = {3: "value out of range", 77: "value out of range", 500: "document too large"}
    delivery = make(db, batch_size=1000, flush_interval=0.01)
    with caplog.at_level(logging.DEBUG, logger="statspout.sink.fake"):
        for item in range(1000):
            delivery.put(item)
        delivery.start()
        wait_until(lambda: delivery.counters()["buffered"] == 0)
        delivery.close()
    counts = delivery.counters()
    assert sorted(db.items) == sorted(set(range(1000)) - {3, 77, 500})  # each once
    assert (counts["written"], counts["rejected"], counts["failed_batches"]) == (997, 3, 3)
    assert counts["retries"] == 0
    # About two writes per level of halving for each bad sample, not one per sample.
    assert db.attempts <= 3 * 2 * 10 + 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2  # two distinct reasons, each once; item numbers set aside
    assert any("value out of range" in e for e in errors)
    assert any("document too large" in e for e in errors)


def test_a_failure_not_about_the_data_gives_the_batch_up_without_splitting() -> None:
    db = FakeDatabase()
    db.refuse = True
    delivery = make(db, batch_size=100, flush_interval=0.01)
    for item in range(100):
        delivery.put(item)
    delivery.start()
    wait_until(lambda: delivery.counters()["failed_batches"] == 1)
    delivery.close()
    assert db.attempts == 1 and delivery.counters()["split_batches"] == 0


def test_a_partial_write_counts_the_rejected_points_and_the_samples_as_written() -> None:
    db = FakeDatabase()
    db.partly = {4: 1}
    delivery = make(db, batch_size=10, flush_interval=0.01)
    for item in range(10):
        delivery.put(item)
    delivery.start()
    wait_until(lambda: delivery.counters()["buffered"] == 0)
    delivery.close()
    counts = delivery.counters()
    assert (counts["written"], counts["rejected"], counts["rejected_points"]) == (10, 0, 1)
    assert db.attempts == 1 and counts["failed_batches"] == 0


def test_a_split_part_that_meets_an_outage_is_retried_and_nothing_is_lost() -> None:
    db = FakeDatabase()
    db.bad = {0: "bad"}
    delivery = make(db, batch_size=8, flush_interval=0.01)
    for item in range(8):
        delivery.put(item)
    original = db.write_batch
    calls = []

    def flaky(batch: list[int]) -> None:
        calls.append(len(batch))
        if len(calls) == 3:  # the second half of the first split
            raise Unreachable()
        original(batch)

    delivery._write_batch = flaky
    delivery.start()
    wait_until(lambda: delivery.counters()["buffered"] == 0)
    delivery.close()
    counts = delivery.counters()
    assert sorted(db.items) == list(range(1, 8))
    assert (counts["written"], counts["rejected"], counts["retries"]) == (7, 1, 1)


def test_at_shutdown_an_unreachable_database_gets_one_attempt_not_the_whole_timeout() -> None:
    db = FakeDatabase()
    db.down.set()
    delivery = make(db, batch_size=3, flush_interval=0.01, max_backoff=60.0)
    delivery.start()
    for item in range(7):
        delivery.put(item)
    wait_until(lambda: db.attempts >= 1)
    before = db.attempts
    started = time.monotonic()
    assert delivery.close(timeout=30.0) == 7
    assert time.monotonic() - started < 15.0  # not the 30 s close timeout, nor the backoff
    assert db.attempts == before + 1
    assert delivery.counters()["unflushed"] == 7


def test_reasons_differing_only_in_numbers_or_quoted_text_are_one_reason() -> None:
    assert reason_key("unable to parse 'cpu,a=1 x=2i 17': time outside range 17") == (
        reason_key("unable to parse 'mem,b=2 y=3i 99': time outside range 99"))
    assert reason_key("field type conflict") != reason_key("database not found")


def test_a_url_password_in_a_failure_reason_is_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(batch: list[int]) -> None:
        raise Refused("POST http://admin:s3cr3t@db.example:8086/write?db=x failed")

    delivery = Delivery(refuse, classify, DeliverySettings(batch_size=1, flush_interval=0.01,
                                                           close_timeout=5.0),
                        name="fake", rng=random.Random(1))
    with caplog.at_level(logging.DEBUG, logger="statspout.sink.fake"):
        delivery.start()
        delivery.put(1)
        wait_until(lambda: delivery.counters()["rejected"] == 1)
        delivery.close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "s3cr3t" not in logged and "http://admin:***@db.example:8086" in logged


def test_unsettled_counts_only_what_the_database_has_not_confirmed() -> None:
    """The confirmed watermark a replay checkpoint uses: samples settle in put order."""
    db = FakeDatabase()
    db.down.set()
    delivery = make(db, batch_size=10, flush_interval=0.01)
    delivery.start()
    for item in range(25):
        delivery.put(item)
    wait_until(lambda: delivery.counters()["retries"] >= 1)
    assert delivery.unsettled() == 25  # nothing confirmed while the database is down
    db.down.clear()
    wait_until(lambda: delivery.unsettled() == 0)
    assert db.items == list(range(25))
    delivery.close()
