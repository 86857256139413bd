"""A collector without Docker: the real publishing socket (bus.CollectorPublisher) sending
numbered samples of one container at a steady rate, for tests that account for every sample.

Each sample is ``make_series_stats(seq)``: its own timestamp and ``cpu_usage_ns = BASE + seq``,
so a store shows which samples it holds. Warm-up samples (another container name) let a test
see that every sink is connected before the counted load starts.
"""

from __future__ import annotations

import logging
import threading
import time

import zmq

from statspout import bus, handshakes, wire
from support.samples import make_series_stats

COUNTED_NAME = "web"
WARMUP_NAME = "warmup"
CPU_BASE = make_series_stats(0).cpu_usage_ns  # cpu_usage_ns of sample seq is CPU_BASE + seq


def seq_of_cpu(cpu_usage_ns: int) -> int:
    return cpu_usage_ns - CPU_BASE


class SyntheticCollector:
    """Publishes in a thread of its own; ``sent`` holds the seqs handed to the router link."""

    def __init__(self, endpoint: str, rate: float = 150.0) -> None:
        self.context = zmq.Context()
        self.publisher = bus.CollectorPublisher(self.context, endpoint)
        # As the real collector: links made and lost drive the publisher's resend.
        self.watch = handshakes.watch_router_link(
            self.publisher.socket, endpoint, logging.getLogger("synthetic-collector"), 60.0,
            "no router at {endpoint} for {seconds:.0f} s", on_linked=self.publisher.link_made,
            on_unlinked=self.publisher.link_lost)
        self.period = 1.0 / rate
        self.seq = 0
        self.sent: list[int] = []  # counted samples the publisher took
        self.dropped: list[int] = []  # counted samples the publisher refused (and counted)
        self._counting = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def count_from_now(self) -> None:
        """Warm-up over: publish counted samples from the next one on."""
        self._counting = True

    def stop_counting(self) -> None:
        """Publish warm-up samples again (the load is over), so every counted one is done."""
        self._counting = False

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.seq += 1
            counting = self._counting
            name = COUNTED_NAME if counting else WARMUP_NAME
            sample = make_series_stats(self.seq, name=name)
            taken = self.publisher.publish(wire.encode(sample))
            if counting:
                with self._lock:
                    (self.sent if taken else self.dropped).append(self.seq)
            next_at += self.period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.watch.stop()
        self.publisher.close()
        self.context.term()
