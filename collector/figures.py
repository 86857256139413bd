"""A container's figures at one moment, the ``docker stats`` formulas over two of them, and the
stats message built from them.

A source (the Docker API here, cgroup files in the fast path) produces ``Reading``s: every
figure the wire carries as read (``wire.READ_FIGURES``, under the wire's names). The
percentages are computed here, from the previous reading of the same container, so that every
source means the same thing.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from typing import Any

from statspout import wire
from statspout.collector.discovery import ContainerInfo

_READ_FIGURES = frozenset(wire.READ_FIGURES)
# The per-interface network counters, summed over interfaces by every source.
NETWORK_FIGURES = tuple(name for name in wire.READ_FIGURES if name.startswith(("rx_", "tx_")))


@dataclass(frozen=True, slots=True)
class Reading:
    # When the figures were read: ns since the epoch, UTC, as the wire's ``timestamp``.
    timestamp: int
    # The host's cumulative CPU time over all CPUs (the API's system_cpu_usage). None where the
    # source has no such figure: CPU percent is then taken over wall-clock time.
    system_cpu_ns: int | None
    # Every name of wire.READ_FIGURES, no other: a source that misses one fails here, by name.
    figures: dict[str, int]

    def __post_init__(self) -> None:
        if self.figures.keys() != _READ_FIGURES:
            missing = sorted(_READ_FIGURES - self.figures.keys())
            unknown = sorted(self.figures.keys() - _READ_FIGURES)
            raise ValueError(f"reading figures: missing {missing}, unknown {unknown}")


def stats_message(
    seq: int, host: str, container: ContainerInfo, reading: Reading, previous: Reading | None
) -> wire.ContainerStats:
    """The stats message of one reading; ``previous`` is the container's reading before it."""
    return wire.ContainerStats(
        seq=seq, host=host, id=container.id, name=container.name, image=container.image,
        labels=container.labels, timestamp=reading.timestamp,
        cpu_percent=cpu_percent(previous, reading), mem_percent=mem_percent(reading),
        **reading.figures,
    )


def cpu_percent(previous: Reading | None, current: Reading) -> float | None:
    """CPU use between two readings; 100 = one full core. None when it cannot be known (no
    previous reading, a counter that went backwards, no time between the two)."""
    if previous is None:
        return None
    cpu_delta = current.figures["cpu_usage_ns"] - previous.figures["cpu_usage_ns"]
    if cpu_delta < 0:
        return None  # the container restarted: its counter began again
    if current.system_cpu_ns is not None and previous.system_cpu_ns is not None:
        # docker stats: Δcontainer / Δsystem × online CPUs × 100
        system_delta = current.system_cpu_ns - previous.system_cpu_ns
        if system_delta <= 0:
            return None
        return cpu_delta / system_delta * current.figures["online_cpus"] * 100.0
    wall_delta = current.timestamp - previous.timestamp
    if wall_delta <= 0:
        return None
    return cpu_delta / wall_delta * 100.0


def mem_percent(reading: Reading) -> float | None:
    limit = reading.figures["mem_limit"]
    if limit <= 0:
        return None
    return reading.figures["mem_usage"] / limit * 100.0


def usage_minus_inactive(usage: int, inactive_file: int | None) -> int:
    """Memory usage as docker stats computes it: without the inactive file cache, which the
    kernel reclaims first."""
    if inactive_file is not None and inactive_file < usage:
        return usage - inactive_file
    return usage


def memory_usage(memory_stats: dict[str, Any]) -> int:
    """Usage minus inactive file cache, as docker stats computes it for cgroup v1 and v2."""
    usage = int(memory_stats.get("usage") or 0)
    stats = memory_stats.get("stats") or {}
    inactive = stats.get("total_inactive_file")  # cgroup v1
    if inactive is None:
        inactive = stats.get("inactive_file")  # cgroup v2
    return usage_minus_inactive(usage, None if inactive is None else int(inactive))


def reading_from_api(payload: dict[str, Any]) -> Reading | None:
    """A Reading from one ``GET /containers/{id}/stats`` object; None when the container was
    not running (the daemon answers with a zero time and empty figures then)."""
    read = payload.get("read") or ""
    if read.startswith("0001-01-01"):
        return None
    cpu = payload.get("cpu_stats") or {}
    usage = cpu.get("cpu_usage") or {}
    memory = payload.get("memory_stats") or {}
    if "total_usage" not in usage or not memory:
        return None
    online = cpu.get("online_cpus") or len(usage.get("percpu_usage") or ()) or 1
    system = cpu.get("system_cpu_usage")
    networks = payload.get("networks") or {}
    blk_read, blk_write = _block_io(payload.get("blkio_stats") or {})
    return Reading(
        timestamp=parse_docker_time(read),
        system_cpu_ns=int(system) if system is not None else None,
        figures={
            "cpu_usage_ns": int(usage["total_usage"]),
            "online_cpus": int(online),
            "mem_usage": memory_usage(memory),
            "mem_limit": int(memory.get("limit") or 0),
            "blk_read_bytes": blk_read,
            "blk_write_bytes": blk_write,
            "pids": int((payload.get("pids_stats") or {}).get("current") or 0),
            # the API's per-interface keys are the wire's names
            **{name: _sum(networks, name) for name in NETWORK_FIGURES},
        },
    )


def _sum(networks: dict[str, dict[str, Any]], key: str) -> int:
    return sum(int(interface.get(key) or 0) for interface in networks.values())


def _block_io(blkio: dict[str, Any]) -> tuple[int, int]:
    """Bytes read and written over all devices (ops are "Read"/"Write" on v1, lower case on v2)."""
    read = write = 0
    for entry in blkio.get("io_service_bytes_recursive") or ():
        op = str(entry.get("op", "")).lower()
        if op == "read":
            read += int(entry.get("value") or 0)
        elif op == "write":
            write += int(entry.get("value") or 0)
    return read, write


_TIME = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$"
)


def parse_docker_time(text: str) -> int:
    """RFC 3339 with up to nanosecond precision → integer nanoseconds since the epoch, UTC.
    (datetime stops at microseconds, and the daemon gives nanoseconds.)"""
    match = _TIME.match(text)
    if not match:
        raise ValueError(f"unparseable time {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    seconds = calendar.timegm(
        (int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0)
    )
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))
