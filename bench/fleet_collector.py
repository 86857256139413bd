"""One synthetic collector of the fleet benchmark (bench/fleet.py): a Docker host without
Docker, whose containers' messages are built by the collector's own code and published through
the real ``bus.CollectorPublisher``, cycle after cycle, as ``statspout-collector`` does.

Per cycle, as collector/loop.py's ``_start_cycle``: a state message for every container
(``--states all``), the host's engine message, then a stats message for every container, each
with the next number of the host's one sequence. Messages are built by
``collector.figures.stats_message`` / ``collector.states.state_message`` / ``engine_message``
from readings with every wire 1.1 figure (one interface, one block device, a memory.stat),
so that they are the size and shape of the real ones; the figures move from cycle to cycle.

``publish_cycle`` is the one place that hands a cycle to the bus, through the collector's own
BatchingPublisher: batches of wire 1.2 with the collector's default sizes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import zmq

from statspout import bus, handshakes, wire
from statspout.collector.batching import DEFAULT_BATCH_ITEMS, BatchingPublisher, queued_payloads
from statspout.collector.discovery import ContainerInfo
from statspout.collector.figures import Reading, stats_message
from statspout.collector.states import (
    ContainerStateFigures,
    EngineFigures,
    engine_message,
    state_message,
)

log = logging.getLogger("statspout.bench.fleet")

# A fleet's containers: (service, image, extra labels); names and projects vary per host.
SERVICES = (
    ("web", "nginx:1.27", {"tier": "frontend"}),
    ("api", "registry.example.com/shop/api:2.14.1", {"tier": "backend", "team": "shop"}),
    ("worker", "registry.example.com/shop/worker:2.14.1", {"tier": "batch", "team": "shop"}),
    ("db", "postgres:16.4", {"tier": "data", "team": "ops"}),
    ("cache", "redis:7.2", {"tier": "data", "team": "ops"}),
    ("queue", "rabbitmq:3.13-management", {"tier": "data", "team": "ops"}),
    ("search", "docker.elastic.co/elasticsearch/elasticsearch:8.15.0", {"tier": "data"}),
    ("proxy", "traefik:v3.1", {"tier": "edge", "monitor": "true"}),
)
PROJECTS = ("shop", "billing", "catalog", "auth", "reports")
MEM_LIMIT = 2 * 2**30
RELEASE_WAIT_S = 900.0


@dataclass
class CollectorTally:
    """What one synthetic collector published, by kind, and what its publisher counted."""

    host: str
    cycles: int = 0
    late_cycles: int = 0
    stats_taken: int = 0
    stats_dropped: int = 0
    states_taken: int = 0
    states_dropped: int = 0
    engines_taken: int = 0
    engines_dropped: int = 0
    warmup_engines: int = 0  # engine messages sent until the router subscribed (not counted)
    last_seq: int = 0
    cpu_s: float = 0.0  # the process's CPU time (user + system)
    first_cycle_at: float = 0.0  # wall clock, seconds: the first cycle began
    last_cycle_at: float = 0.0  # the last cycle ended
    worst_gap_s: float = 0.0  # the longest time between two cycles' starts
    publisher: dict[str, int] | None = None


def host_name(index: int) -> str:
    return f"node-{index:03d}.dc1.example.com"


def host_containers(host: str, containers: int) -> list[ContainerInfo]:
    """The containers of one host: compose-style names, real-looking images and labels."""
    infos = []
    for index in range(containers):
        service, image, extra = SERVICES[index % len(SERVICES)]
        project = PROJECTS[(index // len(SERVICES)) % len(PROJECTS)]
        replica = index // (len(SERVICES) * len(PROJECTS)) + 1
        labels = {
            "com.docker.compose.project": project,
            "com.docker.compose.service": service,
            "com.docker.compose.container-number": str(replica),
            "org.opencontainers.image.version": image.rsplit(":", 1)[-1],
            "env": "prod" if index % 5 else "staging",
            **extra,
        }
        infos.append(ContainerInfo(
            id=hashlib.sha256(f"{host}/{index}".encode()).hexdigest(),
            name=f"{project}-{service}-{replica}", image=image, labels=labels,
            pid=10_000 + index,
        ))
    return infos


def reading(index: int, cycle: int, timestamp: int) -> Reading:
    """A container's figures at ``cycle``: counters grow, gauges move."""
    cpu_ns = cycle * (5_000_000 + index * 10_000)
    mem = (64 + index % 512) * 2**20 + (cycle % 60) * 4096
    rx, tx = cycle * (1500 + index), cycle * (900 + index)
    mem_stat = {"cache": mem // 4, "rss": mem // 2, "mapped_file": 2**20, "pgfault": cycle * 30,
                "pgmajfault": 0, "active_file": mem // 8, "inactive_file": mem // 8,
                "active_anon": mem // 2, "inactive_anon": 0, "unevictable": 0, "writeback": 0}
    return Reading(timestamp=timestamp, figures={
        "cpu_usage_ns": cpu_ns, "online_cpus": 8, "mem_usage": mem, "mem_limit": MEM_LIMIT,
        "rx_bytes": rx, "tx_bytes": tx, "rx_packets": rx // 1000, "tx_packets": tx // 1000,
        "rx_errors": 0, "tx_errors": 0, "rx_dropped": 0, "tx_dropped": 0,
        "blk_read_bytes": cycle * 4096, "blk_write_bytes": cycle * 8192, "pids": 1 + index % 40,
        "cpu_user_ns": cpu_ns * 3 // 4, "cpu_system_ns": cpu_ns // 4, "cpu_periods": cycle * 10,
        "cpu_throttled_periods": 0, "cpu_throttled_ns": 0, "mem_cgroup_usage": mem + 2**20,
        "mem_max_usage": mem + 2**24, "mem_failcnt": 0, "mem_rss": mem // 2,
        "mem_cache": mem // 4, "mem_active_file": mem // 8, "mem_inactive_file": mem // 8,
        "mem_mapped_file": 2**20, "mem_swap": 0, "mem_pgfault": cycle * 30,
        "mem_pgmajfault": 0, "mem_stat": mem_stat, "oom_kills": 0,
        "net_interfaces": {"eth0": {"rx_bytes": rx, "tx_bytes": tx, "rx_packets": rx // 1000,
                                    "tx_packets": tx // 1000, "rx_errors": 0, "tx_errors": 0,
                                    "rx_dropped": 0, "tx_dropped": 0}},
        "blk_devices": {"8:0": {"read_bytes": cycle * 4096, "write_bytes": cycle * 8192}},
    })


def running_state(started_at: int, pid: int) -> ContainerStateFigures:
    return ContainerStateFigures(status="running", health="healthy", health_failing_streak=0,
                                 restart_count=0, exit_code=None, oom_killed=False,
                                 started_at=started_at, finished_at=None, pid=pid)


class _TakenFlags:
    """A publisher in front of the bus that notes, per message, whether the bus took it (a
    batch is taken or refused whole)."""

    def __init__(self, publisher: bus.CollectorPublisher) -> None:
        self.counts = publisher.counts
        self._publisher = publisher
        self.flags: list[bool] = []

    def publish(self, payload: bytes, messages: int = 1) -> bool:
        taken = self._publisher.publish(payload, messages)
        self.flags.extend([taken] * messages)
        return taken


def publish_cycle(publisher: bus.CollectorPublisher, messages: list[wire.Message]
                  ) -> list[bool]:
    """Hand one cycle's messages to the bus as collector/loop.py does: gathered by the
    collector's own BatchingPublisher (wire 1.2, its default --batch-items and --batch-bytes)
    and published as batches. Whether the publisher took each one, in order."""
    if not messages:
        return []
    taken = _TakenFlags(publisher)
    batches = BatchingPublisher(taken, messages[0].host)
    for message in messages:
        batches.add(message)
    batches.flush()
    return taken.flags


class SyntheticHost:
    """One host's collector: its containers, its sequence, its publisher."""

    def __init__(self, index: int, containers: int, interval: float,
                 publisher: bus.CollectorPublisher) -> None:
        self.host = host_name(index)
        self.containers = host_containers(self.host, containers)
        self.interval = interval
        self.publisher = publisher
        self.started_at = time.time_ns() - 3600 * 10**9
        self.states = [running_state(self.started_at, info.pid) for info in self.containers]
        self.engine = EngineFigures(engine="docker", server_version="27.3.1",
                                    containers_running=containers, containers_paused=0,
                                    containers_stopped=0, images=len(SERVICES), cpus=16,
                                    memory_total=64 * 2**30)
        self.previous: list[Reading | None] = [None] * containers
        self.seq = 0
        self.tally = CollectorTally(self.host)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def warm_up(self, go: Any, deadline: float) -> bool:
        """Publish the engine message every half second until ``go`` is set (the bench has seen
        every host in every store), as a starting collector does before its first cycle; False
        at the deadline. Not counted: a message before the router subscribed is dropped."""
        while time.monotonic() < deadline:
            message = engine_message(self._next_seq(), self.host, self.engine,
                                     timestamp=time.time_ns(), interval_s=self.interval)
            self.tally.warmup_engines += 1
            publish_cycle(self.publisher, [message])
            if go.wait(0.5):
                return True
        return False

    def cycle(self, number: int) -> None:
        """Build and publish one cycle: states, the engine, then the samples."""
        now = time.time_ns()
        messages: list[wire.Message] = [
            state_message(self._next_seq(), self.host, info, figures, timestamp=now,
                          interval_s=self.interval)
            for info, figures in zip(self.containers, self.states, strict=True)]
        messages.append(engine_message(self._next_seq(), self.host, self.engine,
                                       timestamp=now, interval_s=self.interval))
        for index, info in enumerate(self.containers):
            current = reading(index, number, time.time_ns())
            messages.append(stats_message(self._next_seq(), self.host, info, current,
                                          self.previous[index], interval_s=self.interval,
                                          oom_events=0))
            self.previous[index] = current
        taken = publish_cycle(self.publisher, messages)
        self._count(messages, taken)
        self.tally.cycles += 1
        self.tally.last_seq = self.seq

    def _count(self, messages: list[wire.Message], taken: list[bool]) -> None:
        tally = self.tally
        for message, took in zip(messages, taken, strict=True):
            if isinstance(message, wire.ContainerStats):
                if took:
                    tally.stats_taken += 1
                else:
                    tally.stats_dropped += 1
            elif isinstance(message, wire.ContainerState):
                if took:
                    tally.states_taken += 1
                else:
                    tally.states_dropped += 1
            elif took:
                tally.engines_taken += 1
            else:
                tally.engines_dropped += 1


def run_collector(index: int, endpoint: str, containers: int, interval: float, cycles: int,
                  go: Any, first_tick: Any, phase_s: float, results: Any,
                  link_deadline: float, release: Any, niceness: int, stop: Any) -> None:
    """A collector process: warm up until ``go``, then ``cycles`` cycles from
    ``first_tick.value`` + ``phase_s`` (wall-clock seconds), ticking as collector/loop.py does;
    the tally goes to ``results`` (a multiprocessing queue) at the end, or as soon as ``stop``
    is set (the bench's time limit: the cycles not run are not counted). The socket stays open
    until ``release`` (at most RELEASE_WAIT_S): what it still queues is not thrown away by the
    close's linger while the router catches up. ``niceness`` is added to the process's nice
    value (the fleet's collectors share the pipeline's machine here; on a fleet they do not)."""
    os.nice(niceness)
    context = zmq.Context()
    publisher = bus.CollectorPublisher(
        context, endpoint, queued_payloads(bus.DEFAULT_HWM, DEFAULT_BATCH_ITEMS))
    watch = handshakes.watch_router_link(
        publisher.socket, endpoint, log, 60.0, "no router at {endpoint} for {seconds:.0f} s",
        on_linked=publisher.link_made, on_unlinked=publisher.link_lost)
    host = SyntheticHost(index, containers, interval, publisher)
    try:
        if host.warm_up(go, link_deadline):
            start = first_tick.value + phase_s
            next_tick = time.monotonic() + max(0.0, start - time.time())
            previous_start = None
            for number in range(1, cycles + 1):
                if stop.is_set():
                    break
                delay = next_tick - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
                if previous_start is None:
                    host.tally.first_cycle_at = time.time()
                else:
                    host.tally.worst_gap_s = max(host.tally.worst_gap_s,
                                                 time.monotonic() - previous_start)
                previous_start = time.monotonic()
                host.cycle(number)
                next_tick += interval
                if next_tick < time.monotonic():  # as loop.py: a late cycle is not caught up
                    host.tally.late_cycles += 1
                    next_tick = time.monotonic() + interval
        host.tally.last_cycle_at = time.time()
        host.tally.publisher = asdict(publisher.counts)
        host.tally.cpu_s = time.process_time()
        results.put(asdict(host.tally))
        release.wait(RELEASE_WAIT_S)
        # The bench has read every tally before release (or no longer wants it): the exit
        # need not wait for the queue's pipe.
        results.cancel_join_thread()
    except KeyboardInterrupt:
        pass
    finally:
        watch.stop()
        publisher.close()
        context.term()
