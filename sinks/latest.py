"""The latest sample of every container, for the sinks that serve current values (Prometheus,
REST) rather than store a history.

Delivery for such sinks: a sample is delivered once it is in the table; one that a newer sample
replaces before anybody reads it is never seen. A container leaves the table on its stop,
rename (it comes back under its new name with its next sample) and destroy events, and, when a
maximum age is set, when no sample of it arrived for that long (its collector died).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from types import SimpleNamespace

from statspout.sinks.base import Sink
from statspout.wire import ContainerEvent, ContainerStats

# A rename keeps the container id, but the stored sample carries the old name until the next
# sample arrives with the new one.
FORGETTING_ACTIONS = ("stop", "rename", "destroy")


class LatestSamples:
    """The latest sample per (host, container id) and when it arrived. Written by the worker
    thread and read by HTTP server threads, hence the lock."""

    def __init__(
        self, max_age: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: dict[tuple[str, str], tuple[ContainerStats, float]] = {}

    def put(self, sample: ContainerStats) -> None:
        with self._lock:
            self._samples[(sample.host, sample.id)] = (sample, self._clock())

    def forget(self, host: str, container_id: str) -> None:
        with self._lock:
            self._samples.pop((host, container_id), None)

    def current(self) -> list[ContainerStats]:
        """The samples not older than max_age (older ones are dropped for good), by host and
        name. Age counts from arrival, not from the sample's timestamp, so that a collector's
        clock skew does not matter."""
        now = self._clock()
        with self._lock:
            if self._max_age is not None:
                stale = [key for key, (_, at) in self._samples.items()
                         if now - at > self._max_age]
                for key in stale:
                    del self._samples[key]
            samples = [sample for sample, _ in self._samples.values()]
        return sorted(samples, key=lambda s: (s.host, s.name))

    def __len__(self) -> int:
        with self._lock:
            return len(self._samples)


class LatestSampleSink(Sink):
    """A sink that keeps ``self.samples`` current from the stream; subclasses serve it."""

    def __init__(self, settings: SimpleNamespace, samples: LatestSamples) -> None:
        super().__init__(settings)
        self.samples = samples
        self._forgotten = 0

    def write(self, sample: ContainerStats) -> None:
        self.samples.put(sample)

    def handle_event(self, event: ContainerEvent) -> None:
        if event.action in FORGETTING_ACTIONS:
            self.samples.forget(event.host, event.id)
            self._forgotten += 1

    def counters(self) -> Mapping[str, int]:
        return {"containers": len(self.samples), "forgotten": self._forgotten}
