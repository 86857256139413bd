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
    # When the figures were read: ns since the epoch, UTC, as the wire's ``timestamp``. CPU
    # percent is taken over these wall-clock times, on every source and engine.
    timestamp: int
    # Every name of wire.READ_FIGURES, no other: a source that misses one fails here, by name.
    # Values as the wire carries them: int, None where not known, maps for the per-key ones.
    figures: dict[str, Any]

    def __post_init__(self) -> None:
        if self.figures.keys() != _READ_FIGURES:
            missing = sorted(_READ_FIGURES - self.figures.keys())
            unknown = sorted(self.figures.keys() - _READ_FIGURES)
            raise ValueError(f"reading figures: missing {missing}, unknown {unknown}")


def stats_message(
    seq: int, host: str, container: ContainerInfo, reading: Reading, previous: Reading | None,
    *, interval_s: float, oom_events: int,
) -> wire.ContainerStats:
    """The stats message of one reading; ``previous`` is the container's reading before it."""
    return wire.ContainerStats(
        seq=seq, host=host, id=container.id, name=container.name, image=container.image,
        labels=container.labels, timestamp=reading.timestamp,
        cpu_percent=cpu_percent(previous, reading), mem_percent=mem_percent(reading),
        interval_s=interval_s, oom_events=oom_events, **reading.figures,
    )


def cpu_percent(previous: Reading | None, current: Reading) -> float | None:
    """CPU use between two readings; 100 = one full core. None when it cannot be known (no
    previous reading, a counter that went backwards, no time between the two).

    Δcontainer CPU time / Δ wall-clock time between the two reads. With every host CPU online
    this is docker stats' Δcontainer / Δsystem × online CPUs, and it is right on Podman too,
    whose system_cpu_usage (4.3) does not count idle time as Docker's does."""
    if previous is None:
        return None
    cpu_delta = current.figures["cpu_usage_ns"] - previous.figures["cpu_usage_ns"]
    if cpu_delta < 0:
        return None  # the container restarted: its counter began again
    wall_delta = current.timestamp - previous.timestamp
    if wall_delta <= 0:
        return None
    return cpu_delta / wall_delta * 100.0


def mem_percent(reading: Reading) -> float | None:
    limit = reading.figures["mem_limit"]
    if limit <= 0:
        return None
    return reading.figures["mem_usage"] / limit * 100.0


# memory.stat keys of each wire figure: v1 (the hierarchical total_* ones, which count the
# container's whole cgroup subtree as v2's do) and v2. mem_swap is not in v2's memory.stat.
MEMORY_STAT_V1 = {
    "mem_rss": "total_rss", "mem_cache": "total_cache",
    "mem_active_file": "total_active_file", "mem_inactive_file": "total_inactive_file",
    "mem_mapped_file": "total_mapped_file", "mem_swap": "total_swap",
    "mem_pgfault": "total_pgfault", "mem_pgmajfault": "total_pgmajfault",
}
MEMORY_STAT_V2 = {
    "mem_rss": "anon", "mem_cache": "file",
    "mem_active_file": "active_file", "mem_inactive_file": "inactive_file",
    "mem_mapped_file": "file_mapped", "mem_swap": None,
    "mem_pgfault": "pgfault", "mem_pgmajfault": "pgmajfault",
}


def memory_breakdown(stat: dict[str, int] | None) -> dict[str, int | None]:
    """The wire's memory.stat figures; None for each one the file does not have (v1 files have
    ``total_cache``, v2 files ``file``; no file at all on Podman's API)."""
    if not stat:
        return dict.fromkeys(MEMORY_STAT_V1)
    names = MEMORY_STAT_V1 if "total_cache" in stat else MEMORY_STAT_V2
    return {figure: stat.get(key) if key else None for figure, key in names.items()}


def bounded(mapping: dict[str, Any]) -> dict[str, Any]:
    """At most wire.MAX_MAP_ENTRIES entries, the first in sorted key order."""
    if len(mapping) <= wire.MAX_MAP_ENTRIES:
        return mapping
    return {key: mapping[key] for key in sorted(mapping)[:wire.MAX_MAP_ENTRIES]}


def usage_minus_inactive(usage: int, inactive_file: int | None) -> int:
    """Memory usage as docker stats computes it: without the inactive file cache, which the
    kernel reclaims first."""
    if inactive_file is not None and inactive_file < usage:
        return usage - inactive_file
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
    throttling = cpu.get("throttling_data") or {}
    stat = {key: int(value) for key, value in (memory.get("stats") or {}).items()
            if isinstance(value, int)} or None  # Podman sends no memory.stat
    breakdown = memory_breakdown(stat)
    cgroup_usage = int(memory.get("usage") or 0)
    interfaces = {
        name: {key: int(counters.get(key) or 0) for key in NETWORK_FIGURES}
        for name, counters in (payload.get("networks") or {}).items()
    }
    devices = _block_devices(payload.get("blkio_stats") or {})
    return Reading(
        timestamp=parse_docker_time(read),
        figures={
            "cpu_usage_ns": int(usage["total_usage"]),
            "online_cpus": int(online),
            "mem_usage": usage_minus_inactive(cgroup_usage, breakdown["mem_inactive_file"]),
            "mem_limit": int(memory.get("limit") or 0),
            "pids": int((payload.get("pids_stats") or {}).get("current") or 0),
            "cpu_user_ns": _int_or_none(usage.get("usage_in_usermode")),
            "cpu_system_ns": _int_or_none(usage.get("usage_in_kernelmode")),
            "cpu_periods": _int_or_none(throttling.get("periods")),
            "cpu_throttled_periods": _int_or_none(throttling.get("throttled_periods")),
            "cpu_throttled_ns": _int_or_none(throttling.get("throttled_time")),
            "mem_cgroup_usage": cgroup_usage,
            "mem_max_usage": _int_or_none(memory.get("max_usage")),  # v1 only
            "mem_failcnt": _int_or_none(memory.get("failcnt")),  # v1 only
            **breakdown,
            "mem_stat": None if stat is None else bounded(stat),
            "oom_kills": None,  # the API does not give the cgroup's counter
            "net_interfaces": bounded(interfaces),
            "blk_devices": bounded(devices),
            **network_totals(interfaces),
            **block_totals(devices),
        },
    )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def network_totals(interfaces: dict[str, dict[str, int]]) -> dict[str, int]:
    """The wire's rx_*/tx_* totals: each counter summed over the interfaces."""
    return {key: sum(counters[key] for counters in interfaces.values())
            for key in NETWORK_FIGURES}


def block_totals(devices: dict[str, dict[str, int]]) -> dict[str, int]:
    """blk_read_bytes and blk_write_bytes: summed over the devices."""
    return {
        "blk_read_bytes": sum(device["read_bytes"] for device in devices.values()),
        "blk_write_bytes": sum(device["write_bytes"] for device in devices.values()),
    }


def _block_devices(blkio: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Bytes read and written per "MAJOR:MINOR" (ops are "Read"/"Write" on v1, lower case on
    v2; other ops — Sync, Async, Total — are sums of these)."""
    devices: dict[str, dict[str, int]] = {}
    for entry in blkio.get("io_service_bytes_recursive") or ():
        op = str(entry.get("op", "")).lower()
        if op not in ("read", "write"):
            continue
        device = devices.setdefault(f"{entry.get('major', 0)}:{entry.get('minor', 0)}",
                                    {"read_bytes": 0, "write_bytes": 0})
        device[f"{op}_bytes"] += int(entry.get("value") or 0)
    return devices


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
