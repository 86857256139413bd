"""The restart scenarios of test_restarts.py with a collector that publishes batches (wire 1.2):
a router or the sinks killed with SIGKILL and started again lose no sample, and every count is
in samples (the collector's resend, the router's numbers, the sinks' replay and duplicates)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import test_restarts as restarts
from e2e.test_restarts import bus_endpoints, influx, mongo  # noqa: F401 - the rig's fixtures
from support.influxd import InfluxServer
from support.mongo import MongoServer
from support.samples import make_series_stats
from support.synthetic_collector import COUNTED_NAME, WARMUP_NAME, SyntheticCollector

from statspout import bus
from statspout.collector.batching import BatchingPublisher

pytestmark = [pytest.mark.e2e]

SAMPLES_PER_BATCH = 15  # at ~150 samples/s: ten batches a second


class _Taken:
    """The publisher, remembering whether it took the last payload."""

    def __init__(self, publisher: bus.CollectorPublisher) -> None:
        self._publisher = publisher
        self.counts = publisher.counts
        self.last = False

    def publish(self, payload: bytes, messages: int = 1) -> bool:
        self.last = self._publisher.publish(payload, messages)
        return self.last


class BatchingSyntheticCollector(SyntheticCollector):
    """The synthetic collector's samples, published SAMPLES_PER_BATCH to a batch."""

    def _run(self) -> None:
        taken = _Taken(self.publisher)
        batcher = BatchingPublisher(taken, make_series_stats(0).host,
                                    max_items=SAMPLES_PER_BATCH)
        counted: list[int] = []  # the counted samples in the batch being gathered
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.seq += 1
            counting = self._counting
            batcher.add(make_series_stats(self.seq,
                                          name=COUNTED_NAME if counting else WARMUP_NAME))
            if counting:
                counted.append(self.seq)
            if not len(batcher):  # the batch went out
                with self._lock:
                    (self.sent if taken.last else self.dropped).extend(counted)
                counted = []
            next_at += self.period
            self._stop.wait(max(0.0, next_at - time.monotonic()))


@pytest.fixture
def rig(request: pytest.FixtureRequest, bus_endpoints: restarts.Endpoints,  # noqa: F811
        influx: InfluxServer, mongo: MongoServer,  # noqa: F811
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[restarts.Rig]:
    monkeypatch.setattr(restarts, "SyntheticCollector", BatchingSyntheticCollector)
    marker = request.node.get_closest_marker("router_args")
    made = restarts.Rig(bus_endpoints, influx, mongo, tmp_path / "state",
                        marker.args if marker else ())
    try:
        yield made
    finally:
        made.stop()


def test_router_killed_and_restarted_under_batched_load_loses_nothing(rig: restarts.Rig):
    restarts.test_router_killed_and_restarted_under_load_loses_nothing(rig)
    assert rig.collector.publisher.counts.batches > 50


def test_sinks_killed_and_restarted_under_batched_load_lose_nothing(rig: restarts.Rig):
    restarts.test_sinks_killed_and_restarted_under_load_lose_nothing(rig)


@pytest.mark.router_args("--replay-seconds", "2")
def test_beyond_the_replay_window_the_loss_of_batches_is_counted_in_samples(rig: restarts.Rig):
    restarts.test_beyond_the_replay_window_the_loss_is_counted_exactly(rig)
