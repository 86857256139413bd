"""Publishing never blocks collection: with no router, or a router that does not keep up,
messages are dropped at the socket and counted, and the collector keeps sampling."""

from __future__ import annotations

import re

import pytest
import zmq
from support.processes import Process, program
from support.waiting import wait_for

from statspout import bus


def test_full_queue_drops_are_counted_and_never_block():
    context = zmq.Context()
    stalled_router = context.socket(zmq.SUB)
    stalled_router.setsockopt(zmq.RCVHWM, 10)
    stalled_router.setsockopt(zmq.SUBSCRIBE, b"")
    stalled_router.bind("tcp://127.0.0.1:*")
    publisher = bus.CollectorPublisher(
        context, stalled_router.getsockopt_string(zmq.LAST_ENDPOINT), hwm=10)
    try:
        # Until the subscription arrives, messages are dropped as having no subscriber. A bound
        # SUB takes in a new peer (and sends it the subscription) only when its thread calls
        # into it: poll, without ever reading a message.
        wait_for(lambda: stalled_router.poll(0) >= 0 and publisher.publish(b"probe"), 10,
                 "the router's subscription")
        results = [publisher.publish(b"x" * 100) for _ in range(20_000)]
    finally:
        publisher.close()
        stalled_router.close()
        context.term()
    counts = publisher.counts
    assert counts.dropped_full_queue > 0
    assert results.count(False) == counts.dropped_full_queue
    assert counts.sent + counts.dropped_full_queue == 20_001


@pytest.mark.docker
def test_collector_without_a_router_counts_what_it_drops(make_container, endpoints):
    make_container("sleep 3600")
    nowhere, _ = endpoints  # nothing listens there
    collector = Process([program("statspout-collector"), "--connect", nowhere, "--interval", "1",
                         "--report-interval", "1", "--source", "api"])
    try:
        def dropped_while_sampling() -> bool:
            reports = re.findall(r"samples=(\d+).*dropped_no_subscriber=(\d+)", collector.log())
            return any(int(s) >= 2 and int(d) >= 2 for s, d in reports)

        wait_for(dropped_while_sampling, 20, "a report of samples taken and dropped")
    finally:
        assert collector.stop() == 0
