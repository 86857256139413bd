"""The fleet table: the latest sample and state of every container of every host, with what the
view needs to judge it: whether the container stopped, and whether its samples stopped coming.

State messages (wire 1.1) give the status, health and restarts, and keep a stopped or exited
container in the table (it has a state but no new samples: it is marked stopped, not stale);
a container seen only through its state has no sample (``Row.sample`` is None).

Why not ``sinks/latest.py``'s LatestSamples: that table forgets a container on its stop event,
and keeps no sample timestamps per host, while this view shows stopped containers (marked) and
tells from the timestamps which containers went quiet.

Staleness is judged on the collector's own clock, so clock skew between hosts does not matter:
a container is stale when its newest sample is older than its host's newest sample by more than
``stale_intervals`` sampling intervals, or when its whole host has been silent (by arrival time
here) that long. The interval of a host is the gap between two samples of one container, the
``default_interval_s`` until two have arrived.

Bounded: at most ``max_containers`` entries (a new container beyond is counted in
``counts.table_full`` and not shown), and an entry not heard from for ``forget_after_s`` is
dropped (counted in ``counts.forgotten``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from statspout.wire import ContainerEvent, ContainerState, ContainerStats

RUNNING, STOPPED, PAUSED = "running", "stopped", "paused"
_STATE_OF_ACTION = {"start": RUNNING, "unpause": RUNNING, "stop": STOPPED, "pause": PAUSED}
_STATE_OF_STATUS = {"running": RUNNING, "paused": PAUSED}  # any other status: STOPPED
NS_PER_S = 1_000_000_000


@dataclass
class _Entry:
    sample: ContainerStats | None
    arrived: float  # monotonic seconds
    state: str = RUNNING
    status: ContainerState | None = None  # the latest state message


@dataclass
class _Host:
    last_arrival: float  # monotonic seconds
    newest_timestamp_ns: int
    interval_ns: int | None = None


@dataclass(frozen=True)
class Row:
    """One container as the view shows it."""

    sample: ContainerStats | None  # None: known from its state message only
    state: str
    stale: bool
    # How far the sample lags its host's newest one, on the collector's clock.
    lag_s: float
    status: ContainerState | None = None  # the latest state message, if any

    @property
    def message(self) -> ContainerStats | ContainerState:
        """The sample, else the state: what names the container (host, name, image, labels)."""
        known = self.sample if self.sample is not None else self.status
        assert known is not None  # an entry has one or the other
        return known

    @property
    def host(self) -> str:
        return self.message.host

    @property
    def name(self) -> str:
        return self.message.name


@dataclass(frozen=True)
class HostSeen:
    """What is known of one collector: when it was last heard from and its sampling interval."""

    host: str
    last_seen_s: float  # seconds since its last message arrived here
    interval_s: float
    stale: bool


@dataclass(frozen=True)
class Snapshot:
    rows: list[Row]
    hosts: dict[str, HostSeen]


@dataclass
class TableCounts:
    samples: int = 0
    events: int = 0
    states: int = 0
    table_full: int = 0  # samples of new containers not taken: the table was at max_containers
    forgotten: int = 0  # entries dropped after forget_after_s without a message
    destroyed: int = 0


class FleetTable:
    """Written by the subscription thread, read by the view: every method takes the lock."""

    def __init__(
        self,
        *,
        default_interval_s: float = 5.0,
        stale_intervals: float = 3.0,
        forget_after_s: float = 300.0,
        max_containers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._default_interval_ns = int(default_interval_s * NS_PER_S)
        self._stale_intervals = stale_intervals
        self._forget_after_s = forget_after_s
        self._max_containers = max_containers
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._hosts: dict[str, _Host] = {}
        self.counts = TableCounts()

    def put(self, sample: ContainerStats) -> None:
        now = self._clock()
        key = (sample.host, sample.id)
        with self._lock:
            self.counts.samples += 1
            host = self._seen(sample.host, sample.timestamp, now)
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) >= self._max_containers:
                    self.counts.table_full += 1
                    return
                self._entries[key] = _Entry(sample, now)
                return
            gap = 0 if entry.sample is None else sample.timestamp - entry.sample.timestamp
            if gap > 0:
                host.interval_ns = gap
            entry.sample, entry.arrived = sample, now
            if entry.state == STOPPED:  # a sample after a stop: it runs again
                entry.state = RUNNING

    def put_state(self, state: ContainerState) -> None:
        now = self._clock()
        key = (state.host, state.id)
        with self._lock:
            self.counts.states += 1
            self._seen(state.host, None, now)
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) >= self._max_containers:
                    self.counts.table_full += 1
                    return
                entry = self._entries[key] = _Entry(None, now)
            entry.status, entry.arrived = state, now
            entry.state = _STATE_OF_STATUS.get(state.status, STOPPED)

    def handle_event(self, event: ContainerEvent) -> None:
        now = self._clock()
        key = (event.host, event.id)
        with self._lock:
            self.counts.events += 1
            self._seen(event.host, None, now)
            if event.action == "destroy":
                self.counts.destroyed += self._entries.pop(key, None) is not None
                return
            entry = self._entries.get(key)
            if entry is None:
                return
            entry.arrived = now
            if event.action == "rename":
                if entry.sample is not None:
                    entry.sample = dataclasses.replace(entry.sample, name=event.name)
                if entry.status is not None:
                    entry.status = dataclasses.replace(entry.status, name=event.name)
            else:
                entry.state = _STATE_OF_ACTION.get(event.action, entry.state)

    def snapshot(self) -> Snapshot:
        """Every container still remembered, with its state and staleness, in no order."""
        now = self._clock()
        with self._lock:
            self._forget_older_than(now - self._forget_after_s)
            hosts = {name: self._judge_host(name, host, now) for name, host in self._hosts.items()}
            rows = [self._row(entry, hosts[host]) for (host, _), entry in self._entries.items()]
        return Snapshot(rows, hosts)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _seen(self, name: str, timestamp_ns: int | None, now: float) -> _Host:
        host = self._hosts.get(name)
        if host is None:
            host = self._hosts[name] = _Host(now, timestamp_ns or 0)
        host.last_arrival = now
        if timestamp_ns is not None and timestamp_ns > host.newest_timestamp_ns:
            host.newest_timestamp_ns = timestamp_ns
        return host

    def _forget_older_than(self, horizon: float) -> None:
        old = [key for key, entry in self._entries.items() if entry.arrived < horizon]
        for key in old:
            del self._entries[key]
        self.counts.forgotten += len(old)
        for name in [name for name, host in self._hosts.items() if host.last_arrival < horizon]:
            del self._hosts[name]

    def _judge_host(self, name: str, host: _Host, now: float) -> HostSeen:
        interval_s = (host.interval_ns or self._default_interval_ns) / NS_PER_S
        silent_s = now - host.last_arrival
        return HostSeen(name, silent_s, interval_s, silent_s > self._stale_intervals * interval_s)

    def _row(self, entry: _Entry, host: HostSeen) -> Row:
        if entry.sample is None or entry.state == STOPPED:
            # No samples are due: only a silent host makes it stale.
            return Row(entry.sample, entry.state, host.stale, 0.0, entry.status)
        newest = self._hosts[host.host].newest_timestamp_ns
        lag_s = max(newest - entry.sample.timestamp, 0) / NS_PER_S
        stale = host.stale or lag_s > self._stale_intervals * host.interval_s
        return Row(entry.sample, entry.state, stale, lag_s, entry.status)

