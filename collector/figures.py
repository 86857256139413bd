"""A container's figures at one moment, and the ``docker stats`` formulas over two of them.

A source (the Docker API here, cgroup files in the fast path) produces ``Reading``s of
cumulative counters; the percentages are computed here, from the previous reading of the same
container, so that every source means the same thing.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Reading:
    timestamp_ns: int
    cpu_usage_ns: int
    # The host's cumulative CPU time over all CPUs (the API's system_cpu_usage). None where the
    # source has no such figure: CPU percent is then taken over wall-clock time.
    system_cpu_ns: int | None
    online_cpus: int
    mem_usage: int
    mem_limit: int
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    rx_errors: int = 0
    tx_errors: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0
    blk_read_bytes: int = 0
    blk_write_bytes: int = 0
    pids: int = 0


def cpu_percent(previous: Reading | None, current: Reading) -> float | None:
    """CPU use between two readings; 100 = one full core. None when it cannot be known (no
    previous reading, a counter that went backwards, no time between the two)."""
    if previous is None:
        return None
    cpu_delta = current.cpu_usage_ns - previous.cpu_usage_ns
    if cpu_delta < 0:
        return None  # the container restarted: its counter began again
    if current.system_cpu_ns is not None and previous.system_cpu_ns is not None:
        # docker stats: Δcontainer / Δsystem × online CPUs × 100
        system_delta = current.system_cpu_ns - previous.system_cpu_ns
        if system_delta <= 0:
            return None
        return cpu_delta / system_delta * current.online_cpus * 100.0
    wall_delta = current.timestamp_ns - previous.timestamp_ns
    if wall_delta <= 0:
        return None
    return cpu_delta / wall_delta * 100.0


def mem_percent(reading: Reading) -> float | None:
    if reading.mem_limit <= 0:
        return None
    return reading.mem_usage / reading.mem_limit * 100.0


def memory_usage(memory_stats: dict[str, Any]) -> int:
    """Usage minus inactive file cache, as docker stats computes it for cgroup v1 and v2."""
    usage = int(memory_stats.get("usage") or 0)
    stats = memory_stats.get("stats") or {}
    inactive = stats.get("total_inactive_file")  # cgroup v1
    if inactive is None:
        inactive = stats.get("inactive_file")  # cgroup v2
    if inactive is not None and inactive < usage:
        return usage - int(inactive)
    return usage


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
        timestamp_ns=parse_docker_time(read),
        cpu_usage_ns=int(usage["total_usage"]),
        system_cpu_ns=int(system) if system is not None else None,
        online_cpus=int(online),
        mem_usage=memory_usage(memory),
        mem_limit=int(memory.get("limit") or 0),
        rx_bytes=_sum(networks, "rx_bytes"),
        tx_bytes=_sum(networks, "tx_bytes"),
        rx_packets=_sum(networks, "rx_packets"),
        tx_packets=_sum(networks, "tx_packets"),
        rx_errors=_sum(networks, "rx_errors"),
        tx_errors=_sum(networks, "tx_errors"),
        rx_dropped=_sum(networks, "rx_dropped"),
        tx_dropped=_sum(networks, "tx_dropped"),
        blk_read_bytes=blk_read,
        blk_write_bytes=blk_write,
        pids=int((payload.get("pids_stats") or {}).get("current") or 0),
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
