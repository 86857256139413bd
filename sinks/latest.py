"""The latest sample, state and engine figures of every container and host, for the sinks that
serve current values (Prometheus, REST) rather than store a history.

Delivery for such sinks: a message is delivered once it is in the table; one that a newer one
replaces before anybody reads it is never seen.

Forgetting:
- A container's sample leaves the table on its stop, rename (it comes back under its new name
  with its next sample) and destroy events.
- Its state (``kind: "state"``, wire 1.1) stays over a stop, so that an exited or crash-looping
  container stays visible; it leaves on rename (the next state carries the new name) and
  destroy.
- Staleness (the collector died, or the sink missed a destroy): with ``stale_intervals`` set, a
  sample, state or engine message whose ``interval_s`` is known leaves when no newer one came
  for ``stale_intervals`` × its own ``interval_s`` (so a collector at ``--interval 20`` is not
  judged by a sink-wide setting); a sample without ``interval_s`` (a wire 1.0 collector) leaves
  after ``max_age`` seconds, or never when that is None. Without ``stale_intervals`` (the
  default, as before wire 1.1) only ``max_age`` applies, to everything. Ages count from arrival,
  not from the message's timestamp, so that a collector's clock skew does not matter.

API history: ``put``/``forget``/``current``/``len`` and ``LatestSamples(max_age, clock)`` are
as before; ``stale_intervals``, ``put_state``, ``put_engine``, ``states``, ``engines``,
``forget_state`` and LatestSampleSink's ``handle_state``/``handle_engine`` were added with
wire 1.1. Bounded: one entry per container (sample and state) and per host (engine), each
expiring as above, for at most MAX_CONTAINERS containers and MAX_HOSTS hosts; a new one beyond
them is refused and counted (``refused_*`` in the sink's report) until others leave.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Generic, TypeVar

from statspout.sinks.base import Sink
from statspout.wire import ContainerEvent, ContainerState, ContainerStats, EngineInfo

# A rename keeps the container id, but the stored sample carries the old name until the next
# sample arrives with the new one.
FORGETTING_ACTIONS = ("stop", "rename", "destroy")
# A container's state outlives its stop: it is forgotten only on these.
STATE_FORGETTING_ACTIONS = ("rename", "destroy")
# What "a few intervals" is for the sinks that judge staleness by a message's own interval.
STALE_INTERVALS = 3.0
# A wire-1.0 collector's samples carry no interval_s: they are judged as if taken at its
# default --interval (5 s), the one sinks' settings assumed before wire 1.1.
WIRE_1_0_INTERVAL_S = 5.0
# Bounds of the tables: a new container or host beyond them is refused and counted
# (refused_containers, refused_states, refused_hosts) until entries expire or are forgotten.
MAX_CONTAINERS = 200_000
MAX_HOSTS = 10_000

Key = TypeVar("Key")
Message = TypeVar("Message", ContainerStats, ContainerState, EngineInfo)


class _Expiring(Generic[Key, Message]):
    """The latest message per key with its expiry time (monotonic; None: never), for at most
    ``max_entries`` keys: a message of a new key beyond them is refused and counted. Not locked:
    LatestSamples holds the lock."""

    def __init__(self, max_entries: int) -> None:
        self.entries: dict[Key, tuple[Message, float | None]] = {}
        self._max_entries = max_entries
        self.refused = 0

    def put(self, key: Key, message: Message, expires: float | None) -> None:
        if key not in self.entries and len(self.entries) >= self._max_entries:
            self.refused += 1
            return
        self.entries[key] = (message, expires)

    def current(self, now: float) -> list[Message]:
        """The unexpired messages; expired ones are dropped for good."""
        stale = [key for key, (_, expires) in self.entries.items()
                 if expires is not None and now > expires]
        for key in stale:
            del self.entries[key]
        return [message for message, _ in self.entries.values()]


class LatestSamples:
    """The latest sample and state per (host, container id), and engine figures per host, and
    when each expires. Written by the worker thread and read by HTTP server threads, hence the
    lock."""

    def __init__(
        self, max_age: float | None = None, clock: Callable[[], float] = time.monotonic,
        *, stale_intervals: float | None = None,
    ) -> None:
        self._max_age = max_age
        self._clock = clock
        self._stale_intervals = stale_intervals
        self._lock = threading.Lock()
        self._samples: _Expiring[tuple[str, str], ContainerStats] = _Expiring(MAX_CONTAINERS)
        self._states: _Expiring[tuple[str, str], ContainerState] = _Expiring(MAX_CONTAINERS)
        self._engines: _Expiring[str, EngineInfo] = _Expiring(MAX_HOSTS)

    def _expires(self, interval_s: float | None) -> float | None:
        """When a message that arrives now expires, by its own interval or else max_age."""
        if self._stale_intervals is not None and interval_s is not None:
            return self._clock() + self._stale_intervals * interval_s
        return None if self._max_age is None else self._clock() + self._max_age

    def put(self, sample: ContainerStats) -> None:
        with self._lock:
            self._samples.put((sample.host, sample.id), sample, self._expires(sample.interval_s))

    def put_state(self, state: ContainerState) -> None:
        with self._lock:
            self._states.put((state.host, state.id), state, self._expires(state.interval_s))

    def put_engine(self, engine: EngineInfo) -> None:
        with self._lock:
            self._engines.put(engine.host, engine, self._expires(engine.interval_s))

    def forget(self, host: str, container_id: str) -> None:
        """Forget a container's sample (its state stays: see forget_state)."""
        with self._lock:
            self._samples.entries.pop((host, container_id), None)

    def forget_state(self, host: str, container_id: str) -> None:
        with self._lock:
            self._states.entries.pop((host, container_id), None)

    def current(self) -> list[ContainerStats]:
        """The samples not expired (expired ones are dropped for good), by host and name."""
        with self._lock:
            samples = self._samples.current(self._clock())
        return sorted(samples, key=lambda s: (s.host, s.name))

    def states(self) -> list[ContainerState]:
        """The latest state of every container still known, by host and name."""
        with self._lock:
            states = self._states.current(self._clock())
        return sorted(states, key=lambda s: (s.host, s.name))

    def engines(self) -> list[EngineInfo]:
        """The latest engine figures of every host still heard from, by host."""
        with self._lock:
            engines = self._engines.current(self._clock())
        return sorted(engines, key=lambda e: e.host)

    def __len__(self) -> int:
        """Containers with a sample in the table (expired ones not yet dropped included)."""
        with self._lock:
            return len(self._samples.entries)

    def counters(self) -> dict[str, int]:
        """What the tables hold, and what their bounds refused."""
        with self._lock:
            return {"containers": len(self._samples.entries),
                    "states": len(self._states.entries),
                    "engines": len(self._engines.entries),
                    "refused_containers": self._samples.refused,
                    "refused_states": self._states.refused,
                    "refused_hosts": self._engines.refused}


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
        if event.action in STATE_FORGETTING_ACTIONS:
            self.samples.forget_state(event.host, event.id)

    def handle_state(self, state: ContainerState) -> None:
        self.samples.put_state(state)

    def handle_engine(self, engine: EngineInfo) -> None:
        self.samples.put_engine(engine)

    def counters(self) -> Mapping[str, int]:
        return {**self.samples.counters(), "forgotten": self._forgotten}
