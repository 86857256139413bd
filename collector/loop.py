"""The collector loop: keep the container table current, sample every interval, publish.

Everything that touches the publishing socket runs in this one thread. Docker events (from the
watcher thread) and finished readings (from the thread pool) arrive on one inbox queue, so the
loop sleeps on a single ``get`` and handles each arrival in O(1), however many containers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Protocol

import docker

from statspout import wire
from statspout.collector import discovery
from statspout.collector.batching import DEFAULT_BATCH_BYTES, BatchingPublisher, Publisher
from statspout.collector.discovery import ContainerInfo, DockerEvent, Resync
from statspout.collector.figures import Reading, stats_message
from statspout.collector.states import (
    ContainerStateFigures,
    EncodedState,
    EngineFigures,
    engine_from_info,
    engine_message,
    engine_name,
    state_from_inspect,
)
from statspout.logs import ThrottledErrors

log = logging.getLogger("statspout.collector")

# Stopped containers remembered for their destroy event.
STOPPED_REMEMBERED = 10_000
# Containers whose state is kept (running or not) for the periodic state messages; beyond
# this the oldest known is forgotten (counted as states_dropped) until its next change.
STATES_KEPT = 10_000
# --states: which containers get a state message every interval (changes are always sent,
# except with "none", which sends no state message at all and inspects only on start).
STATES_MODES = ("all", "running", "none")
# GET /info is asked at most this often for the images, CPUs, memory and version of the engine
# message; its container counts come every interval from the collector's own table of states
# (kept current by the events), or from /info each interval under --states none.
ENGINE_INFO_EVERY_S = 60.0
# A batch waits at most about this long for the rest of its cycle's readings (the API source's
# arrive one by one): then it is published, and the rest go in the next one.
BATCH_WAIT_S = 0.5


class ReadingSource(Protocol):
    name: str
    # True when a read waits on something outside this process (the Docker API): reads then
    # run one per pool thread, so that a slow container never delays the others. False when
    # reads are quick local work (cgroup files): one pool task reads a whole cycle in turn,
    # which spares a thread hand-off per container.
    concurrent: bool

    def read(self, container: ContainerInfo) -> Reading | None:
        """A reading of the container; None when it vanished. Called from pool threads."""

    def forget(self, container_id: str) -> None:
        """The container is gone: drop whatever is kept about it."""


@dataclass
class CollectorCounts:
    cycles: int = 0
    samples: int = 0
    events: int = 0
    # A container that stopped or was removed while we sampled it: expected, not an error.
    vanished: int = 0
    failed_samples: int = 0
    # A container still being read from the previous cycle is not asked again; its sample for
    # this cycle is skipped, and counted here.
    skipped_busy: int = 0
    late_cycles: int = 0
    states: int = 0
    states_dropped: int = 0
    engines: int = 0
    # /info failed: the engine message goes on with the figures of the last answer.
    failed_engine_reads: int = 0


class Collector:
    def __init__(
        self,
        *,
        client_factory: Callable[[], docker.DockerClient],
        source: ReadingSource,
        publisher: Publisher,
        host: str,
        interval: float,
        max_concurrency: int,
        report_interval: float = 60.0,
        states: str = "all",
        batch_items: int = 1,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        self._client_factory = client_factory
        self._client: docker.DockerClient | None = None
        self._source = source
        self._publisher = publisher
        # What the loop publishes goes out in batches (batch_items 1: one message a payload),
        # flushed when a burst is over (_flush_when_due).
        self._batch = BatchingPublisher(publisher, host, max_items=batch_items,
                                        max_bytes=batch_bytes)
        self._host = host
        self._interval = interval
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="sample")
        self._report_interval = report_interval
        self._inbox: queue.Queue[DockerEvent | Resync | Future] = queue.Queue()
        self._containers: dict[str, ContainerInfo] = {}
        # Stopped containers, so that their "destroy" event carries their labels and follows
        # the same routes as their samples did. Bounded: the oldest are forgotten first.
        self._stopped: OrderedDict[str, ContainerInfo] = OrderedDict()
        self._previous: dict[str, Reading] = {}
        self._states_mode = states
        # Every container known to exist, running or not, with its last inspected state.
        self._states: dict[str, tuple[ContainerInfo, ContainerStateFigures]] = {}
        # The state messages published since the last interval began, encoded but for seq
        # and timestamp: reused by the next interval's message of an unchanged state.
        self._state_encodings: dict[str, EncodedState] = {}
        # Docker "oom" events counted per container, until it is destroyed.
        self._oom_events: dict[str, int] = {}
        self._engine: str | None = None  # "docker" or "podman", from /version per connection
        self._engine_read: Future | None = None
        self._engine_info: EngineFigures | None = None
        self._engine_info_at = 0.0  # monotonic time of the last /info answer
        self._in_flight: dict[Future, list[ContainerInfo]] = {}
        self._listed_once = False
        self._seq = 0
        self._errors = ThrottledErrors(log)
        self.counts = CollectorCounts()

    def run(self, stop: threading.Event) -> None:
        watcher = discovery.EventWatcher(self._client_factory, self._inbox, stop)
        watcher.start()
        next_tick = time.monotonic()
        next_report = next_tick + self._report_interval
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_tick:
                    if self._listed_once:
                        self._start_cycle()
                    next_tick += self._interval
                    if next_tick < now:
                        self.counts.late_cycles += 1
                        next_tick = now + self._interval
                if now >= next_report:
                    self.report()
                    next_report = now + self._report_interval
                # Wake at the next tick at the latest, and at least twice a second to notice stop.
                timeout = min(next_tick - time.monotonic(), 0.5)
                try:
                    item = self._inbox.get(timeout=max(timeout, 0.0))
                except queue.Empty:
                    self._batch.flush()  # quiet for a while: what is gathered goes
                    continue
                self._handle(item)
                self._flush_when_due()
        finally:
            self._batch.flush()
            watcher.close()
            self._pool.shutdown(wait=False, cancel_futures=True)
            if self._client is not None:
                self._client.close()
            self.report()

    def _handle(self, item: DockerEvent | Resync | Future) -> None:
        if isinstance(item, Future):
            if item is self._engine_read:
                self._engine_read = None
                self._engine_answered(item)
                return
            self._in_flight.pop(item)
            for info, outcome in item.result():
                self._publish_reading(info, outcome)
            return
        try:
            if isinstance(item, Resync):
                self._resync()
            else:
                self._apply_event(item)
        except docker.errors.DockerException as exc:
            # The daemon went away between the event and our request; the watcher reconnects
            # and a Resync follows.
            self._errors.error("Docker request failed during discovery: %s", exc)

    def _docker(self) -> docker.DockerClient:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _resync(self) -> None:
        if self._client is not None:  # a new connection: the daemon may have restarted
            self._client.close()
            self._client = None
        client = self._docker()
        self._engine = engine_name(client.api.version())
        listed = discovery.list_containers(client)
        running = {cid: info for cid, (info, status) in listed.items()
                   if status in discovery.SAMPLED_STATUSES}
        if self._listed_once:
            now = time.time_ns()
            for gone in set(self._containers) - set(running):
                self._forget(gone, "stop", now)
            for new in set(running) - set(self._containers):
                self._publish_event(running[new], "start", now)
        self._containers = running
        self._listed_once = True
        # Removed while we did not look (their destroy event missed): forgotten here.
        for gone in set(self._states) - set(listed):
            self._states.pop(gone)
        for gone in set(self._oom_events) - set(listed):
            self._oom_events.pop(gone)
        if self._states_mode != "none":
            # One inspect per container new to us or whose status moved while we did not look.
            for cid, (_info, status) in listed.items():
                known = self._states.get(cid)
                if known is None or known[1].status != status:
                    self._update_state(cid, discovery.inspect(client, cid))
        if running:
            log.info("%d running containers, %d in all (%s)", len(running), len(listed),
                     self._engine)
        else:
            log.info("0 running containers: nothing to sample (the sinks stay empty until one "
                     "starts); %d in all (%s)", len(listed), self._engine)

    def _apply_event(self, event: DockerEvent) -> None:
        known = self._containers.get(event.id)
        if event.action == "destroy":
            gone = self._containers.pop(event.id, None) or self._stopped.pop(event.id, None)
            self._previous.pop(event.id, None)
            self._source.forget(event.id)
            self._states.pop(event.id, None)
            self._oom_events.pop(event.id, None)
            info = gone or ContainerInfo(event.id, event.name, event.image)
            self._publish_event(info, "destroy", event.timestamp)
            return
        if event.action == "oom":
            self._oom_events[event.id] = self._oom_events.get(event.id, 0) + 1
        # One inspect per change: it tells the state, and the pid and labels of a start.
        attrs = None
        if event.action == "start" or self._states_mode != "none":
            attrs = discovery.inspect(self._docker(), event.id)
        if event.action == "start":
            # it may have died already; its "die" event follows
            if attrs is not None and discovery.is_running(attrs):
                info = discovery.container_info(attrs)
                self._stopped.pop(event.id, None)
                self._containers[event.id] = info
                self._previous.pop(event.id, None)
                self._publish_event(info, "start", event.timestamp)
        elif event.action == "die":
            if known is not None:
                self._forget(event.id, "stop", event.timestamp)
        elif event.action == "rename":
            if known is not None:
                renamed = ContainerInfo(known.id, event.name, known.image, known.labels, known.pid)
                self._containers[event.id] = renamed
                self._publish_event(renamed, "rename", event.timestamp, event.old_name)
        elif event.action in ("pause", "unpause") and known is not None:
            # still sampled: the daemon still answers for a paused container
            self._publish_event(known, event.action, event.timestamp)
        if self._states_mode != "none":
            self._update_state(event.id, attrs)

    def _update_state(self, container_id: str, attrs: dict | None) -> None:
        """Keep and publish the state one inspect gave; None: the container is gone."""
        if attrs is None:
            self._states.pop(container_id, None)
            return
        info, figures = discovery.container_info(attrs), state_from_inspect(attrs)
        self._states.pop(container_id, None)  # the newest change last: the oldest go first
        self._states[container_id] = (info, figures)
        if len(self._states) > STATES_KEPT:
            self._states.pop(next(iter(self._states)))
            self.counts.states_dropped += 1
        self._publish_state(info, figures, time.time_ns())

    def _forget(self, container_id: str, action: str, timestamp: int) -> None:
        info = self._containers.pop(container_id)
        self._previous.pop(container_id, None)
        self._source.forget(container_id)
        self._stopped[container_id] = info
        if len(self._stopped) > STOPPED_REMEMBERED:
            self._stopped.popitem(last=False)
        self._publish_event(info, action, timestamp)

    # Sampling

    def _start_cycle(self) -> None:
        self.counts.cycles += 1
        self._publish_states()
        self._publish_engine()
        busy = {info.id for batch in self._in_flight.values() for info in batch}
        due = [info for info in self._containers.values() if info.id not in busy]
        self.counts.skipped_busy += len(self._containers) - len(due)
        batches = [[info] for info in due] if self._source.concurrent else [due]
        for batch in batches:
            if batch:
                future = self._pool.submit(self._read_in_turn, batch)
                self._in_flight[future] = batch
                future.add_done_callback(self._inbox.put)

    def _read_in_turn(
        self, batch: list[ContainerInfo]
    ) -> list[tuple[ContainerInfo, Reading | Exception | None]]:
        """Run in a pool thread: each container's reading, or the exception reading it raised."""
        outcomes: list[tuple[ContainerInfo, Reading | Exception | None]] = []
        for info in batch:
            try:
                outcomes.append((info, self._source.read(info)))
            except Exception as exc:  # counted and logged by the loop thread
                outcomes.append((info, exc))
        return outcomes

    def _publish_reading(self, info: ContainerInfo, reading: Reading | Exception | None) -> None:
        if isinstance(reading, Exception):
            self.counts.failed_samples += 1
            self._errors.error("sampling %s (%s) failed: %s", info.name, info.id[:12], reading)
            return
        current = self._containers.get(info.id)
        if reading is None or current is None:
            self.counts.vanished += 1
            return
        previous = self._previous.get(info.id)
        self._previous[info.id] = reading
        self.counts.samples += 1
        self._publish(stats_message(
            self._next_seq(), self._host, current, reading, previous,
            interval_s=self._interval, oom_events=self._oom_events.get(info.id, 0),
        ))

    # States and the engine, every interval

    def _publish_states(self) -> None:
        if self._states_mode == "none":
            return
        now = time.time_ns()
        # only the containers published now are kept: bounded as self._states is
        encodings, self._state_encodings = self._state_encodings, {}
        for info, figures in self._states.values():
            if self._states_mode == "all" or figures.exists_running:
                self._publish_state(info, figures, now, encodings.get(info.id))

    def _publish_engine(self) -> None:
        """The engine message of this interval, from the last /info; /info asked again when
        due (every interval under --states none, else every ENGINE_INFO_EVERY_S)."""
        info = self._engine_info
        if info is not None:
            if self._states_mode != "none":
                running, paused, stopped = self._own_counts()
                info = replace(info, containers_running=running, containers_paused=paused,
                               containers_stopped=stopped)
            self.counts.engines += 1
            self._publish(engine_message(self._next_seq(), self._host, info,
                                         timestamp=time.time_ns(), interval_s=self._interval))
        due = self._engine_info_at + ENGINE_INFO_EVERY_S
        if info is None or self._states_mode == "none" or time.monotonic() >= due:
            self._start_engine_read()

    def _own_counts(self) -> tuple[int, int, int]:
        """Containers (running, paused, stopped) as the daemon's /info counts them: restarting
        ones are stopped."""
        statuses = [figures.status for _info, figures in self._states.values()]
        running, paused = statuses.count("running"), statuses.count("paused")
        return running, paused, len(statuses) - running - paused

    def _start_engine_read(self) -> None:
        if self._engine_read is not None:  # the last one has not answered yet
            return
        client, engine = self._docker(), self._engine or "docker"
        self._engine_read = self._pool.submit(lambda: engine_from_info(engine, client.api.info()))
        self._engine_read.add_done_callback(self._inbox.put)

    def _engine_answered(self, done: Future) -> None:
        try:
            self._engine_info = done.result()
        except Exception as exc:  # the daemon went away; the watcher reconnects
            self.counts.failed_engine_reads += 1
            self._errors.error("reading the engine's /info failed: %s", exc)
            return
        self._engine_info_at = time.monotonic()

    # Publishing

    def _publish_event(
        self, info: ContainerInfo, action: str, timestamp: int, old_name: str | None = None
    ) -> None:
        self.counts.events += 1
        self._publish(wire.ContainerEvent(
            seq=self._next_seq(), host=self._host, id=info.id, name=info.name, image=info.image,
            labels=info.labels, timestamp=timestamp, action=action, old_name=old_name,
        ))

    def _publish_state(
        self, info: ContainerInfo, figures: ContainerStateFigures, timestamp: int,
        encoded: EncodedState | None = None,
    ) -> None:
        """``encoded``: this container's last state message, reused when its state is the
        same."""
        self.counts.states += 1
        if encoded is None or not encoded.describes(info, figures):
            encoded = EncodedState(self._host, info, figures, interval_s=self._interval)
        self._state_encodings[info.id] = encoded
        seq = self._next_seq()
        self._batch.add_encoded(encoded.payload(seq, timestamp), seq, timestamp,
                                wire.ContainerIdentity(self._host, info.id, info.name,
                                                       info.image, info.labels))

    def _publish(self, message: wire.Message) -> None:
        self._batch.add(message)

    def _flush_when_due(self) -> None:
        """Publish the gathered batch once the burst is over: nothing more waiting in the
        inbox and no reading of the cycle still out, or it has waited BATCH_WAIT_S."""
        if not len(self._batch) or not self._inbox.empty():
            return
        if not self._in_flight or time.monotonic() - self._batch.started >= BATCH_WAIT_S:
            self._batch.flush()

    def _next_seq(self) -> int:
        # A dropped message still uses its number, so that the router sees the loss as a gap.
        self._seq += 1
        return self._seq

    def report(self) -> None:
        figures = {**asdict(self.counts), **asdict(self._publisher.counts),
                   "containers": len(self._containers), "known_containers": len(self._states)}
        log.info("collector: %s", " ".join(f"{k}={v}" for k, v in figures.items()))
