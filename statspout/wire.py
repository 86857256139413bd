"""The wire schema: the one definition of every message that crosses a socket.

A message is a msgpack map with string keys. ``v`` is the schema version "MAJOR.MINOR": a
reader accepts every minor version of its major (newer minors only add fields, which readers
ignore) and rejects a newer major. ``docs/wire-schema.md`` is this module written out as tables.

Decoding is total: any bytes either decode to a message or raise MalformedMessage, never
another exception, because the router and every sink run it on whatever a socket delivers.
The limits (integer ranges, string lengths, label count) are part of the field table.
"""

from __future__ import annotations

import inspect
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Annotated, Any

import msgpack
import msgspec

SCHEMA_MAJOR = 1
SCHEMA_MINOR = 2
SCHEMA_VERSION = f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}"

# Lifecycle actions a collector publishes as `kind: "event"`.
EVENT_ACTIONS = ("start", "stop", "rename", "destroy", "pause", "unpause")
# Container states as Docker (and Podman) name them, carried by `kind: "state"`.
CONTAINER_STATUSES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")
HEALTH_STATUSES = ("starting", "healthy", "unhealthy")
# Entries allowed in one map-valued field (interfaces, block devices, memory.stat keys), at
# each level: a collector keeps the first ones in sorted order and drops the rest.
MAX_MAP_ENTRIES = 256


# The bounds of every integer field: 64-bit signed stores (InfluxDB, MongoDB) hold them all.
INT_MIN, INT_MAX = 0, 2**63 - 1
# String bounds, in UTF-8 bytes. A host name is a DNS name; ids, names and images are far below
# their bound in practice; labels are bounded in count and per key and value.
MAX_HOST_BYTES = 255
MAX_TEXT_BYTES = 1024
MAX_LABEL_KEY_BYTES = 1024
MAX_LABEL_VALUE_BYTES = 4096
MAX_LABELS = 256
# Keys of map-valued fields (interface names, "MAJOR:MINOR", memory.stat names).
MAX_MAP_KEY_BYTES = 255
# A batch (version 1.2) carries at most this many messages (and as many container identities);
# its size is bounded by the receiving socket's --max-message-bytes like any message.
MAX_BATCH_ITEMS = 10_000
# What a batch's item_containers gives for an item about no container (an engine message).
NO_CONTAINER = -1
_MAX_VERSION_CHARS = 16


class MalformedMessage(ValueError):
    """A payload that is not a message of this schema; the reason is the exception text.

    ``host`` is the message's host when it could still be read and is a valid host name, so
    that a collector that sends broken messages can be named in the counts; None otherwise.
    """

    def __init__(self, reason: str, host: str | None = None) -> None:
        super().__init__(reason)
        self.host = host


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What one wire field holds: used to validate payloads and to write the docs table."""

    name: str
    # "int" (64-bit), "float", "str", "bool", "labels" (map str → str), "int_map" (map str →
    # int), "int_maps" (map str → int_map); maps hold at most MAX_MAP_ENTRIES entries each
    type: str
    unit: str
    description: str
    nullable: bool = False
    # "int": the inclusive range; "str": the longest value in UTF-8 bytes; "labels": the most
    # labels (each key and value bounded by MAX_LABEL_KEY_BYTES, MAX_LABEL_VALUE_BYTES);
    # "float": always finite; maps: MAX_MAP_ENTRIES, MAX_MAP_KEY_BYTES, values in the int range;
    # "items", "identities", "indexes" (a batch's lists): at most MAX_BATCH_ITEMS entries.
    minimum: int = INT_MIN
    maximum: int = INT_MAX
    max_bytes: int = MAX_TEXT_BYTES

    @property
    def limit(self) -> str:
        """The bound, as the docs table shows it."""
        if self.type == "int":
            return f"{self.minimum} … 2^63−1" if self.maximum == INT_MAX else \
                f"{self.minimum} … {self.maximum}"
        if self.type == "float":
            return "finite"
        if self.type == "labels":
            return (f"≤ {MAX_LABELS} labels; key ≤ {MAX_LABEL_KEY_BYTES} B, "
                    f"value ≤ {MAX_LABEL_VALUE_BYTES} B")
        if self.type == "bool":
            return "true or false"
        if self.type in ("int_map", "int_maps"):
            return (f"≤ {MAX_MAP_ENTRIES} entries a level; key ≤ {MAX_MAP_KEY_BYTES} B; "
                    "values 0 … 2^63−1")
        if self.type == "items":
            return f"1 … {MAX_BATCH_ITEMS:,} items"
        if self.type == "identities":
            return (f"≤ {MAX_BATCH_ITEMS:,} entries; id, name, image ≤ {MAX_TEXT_BYTES} B; "
                    "labels as `labels`")
        if self.type == "indexes":
            return f"one per item; {NO_CONTAINER} … entries of containers − 1"
        return f"≤ {self.max_bytes} B"


_IDENTITY = (
    FieldSpec("v", "str", "", 'schema version "MAJOR.MINOR"', max_bytes=_MAX_VERSION_CHARS),
    FieldSpec("kind", "str", "", '"stats", "event", "state", "engine" or "batch"',
              max_bytes=16),
    FieldSpec("seq", "int", "count", "per collector, +1 for every message it publishes"),
    FieldSpec("host", "str", "", "the collector's host name (--host)", max_bytes=MAX_HOST_BYTES),
    FieldSpec("id", "str", "", "full container id"),
    FieldSpec("name", "str", "", "container name, without the leading slash"),
    FieldSpec("image", "str", "", "image the container was created from"),
    FieldSpec("labels", "labels", "", "container labels"),
    FieldSpec(
        "timestamp", "int", "ns",
        "when the figures were read (the daemon's clock on the API source, the collector's on "
        "the cgroup source; for events, the daemon's event time), since the epoch, UTC",
    ),
)

_INTERVAL = FieldSpec(
    "interval_s", "float", "s",
    "the collector's --interval: one such message comes every interval (a sink judges "
    "staleness by it)",
)

_INTERVAL_1_1 = FieldSpec(_INTERVAL.name, _INTERVAL.type, _INTERVAL.unit,
                          _INTERVAL.description, nullable=True)

# The names every container message carries to say what it is about and where it comes from;
# a sink writes them as identity (tags, keys), every other field as a figure.
IDENTITY_NAMES: tuple[str, ...] = tuple(spec.name for spec in _IDENTITY)

STATS_FIELDS: tuple[FieldSpec, ...] = (
    *_IDENTITY,
    FieldSpec(
        "cpu_percent", "float", "%",
        "CPU use over the last interval; 100 = one full core; null without a previous sample",
        nullable=True,
    ),
    FieldSpec("cpu_usage_ns", "int", "ns", "cumulative CPU time of the container"),
    FieldSpec("online_cpus", "int", "count", "CPUs online on the host"),
    FieldSpec("mem_usage", "int", "bytes", "memory usage minus inactive file cache"),
    FieldSpec("mem_limit", "int", "bytes", "memory limit (the host's memory when unlimited)"),
    FieldSpec(
        "mem_percent", "float", "%", "mem_usage / mem_limit × 100; null when no limit is known",
        nullable=True,
    ),
    FieldSpec("rx_bytes", "int", "bytes", "received, summed over all interfaces, cumulative"),
    FieldSpec("tx_bytes", "int", "bytes", "transmitted, summed over all interfaces, cumulative"),
    FieldSpec("rx_packets", "int", "packets", "received, cumulative"),
    FieldSpec("tx_packets", "int", "packets", "transmitted, cumulative"),
    FieldSpec("rx_errors", "int", "count", "receive errors, cumulative"),
    FieldSpec("tx_errors", "int", "count", "transmit errors, cumulative"),
    FieldSpec("rx_dropped", "int", "packets", "received packets dropped, cumulative"),
    FieldSpec("tx_dropped", "int", "packets", "transmitted packets dropped, cumulative"),
    FieldSpec("blk_read_bytes", "int", "bytes", "block device reads, cumulative"),
    FieldSpec("blk_write_bytes", "int", "bytes", "block device writes, cumulative"),
    FieldSpec("pids", "int", "count", "processes and threads in the container"),
    # From here on, fields of version 1.1: all nullable, as a 1.0 collector sends none of them.
    _INTERVAL_1_1,
    FieldSpec(
        "cpu_user_ns", "int", "ns",
        "CPU time in user mode, cumulative (API usage_in_usermode; v1 cpuacct.stat user, "
        "v2 cpu.stat user_usec)", nullable=True,
    ),
    FieldSpec(
        "cpu_system_ns", "int", "ns",
        "CPU time in kernel mode, cumulative (API usage_in_kernelmode; v1 cpuacct.stat system, "
        "v2 cpu.stat system_usec)", nullable=True,
    ),
    FieldSpec(
        "cpu_periods", "int", "count",
        "CFS enforcement periods elapsed, cumulative; 0 without a CPU quota (cpu.stat "
        "nr_periods)", nullable=True,
    ),
    FieldSpec(
        "cpu_throttled_periods", "int", "count",
        "periods in which the container was throttled, cumulative (cpu.stat nr_throttled)",
        nullable=True,
    ),
    FieldSpec(
        "cpu_throttled_ns", "int", "ns",
        "time the container was throttled, cumulative (v1 cpu.stat throttled_time, v2 "
        "throttled_usec)", nullable=True,
    ),
    FieldSpec(
        "mem_cgroup_usage", "int", "bytes",
        "memory charged to the cgroup, page cache included (v1 memory.usage_in_bytes, v2 "
        "memory.current; the API's memory_stats.usage): cAdvisor's container_memory_usage_bytes "
        "(Telegraf's mem usage is this minus the page cache)", nullable=True,
    ),
    FieldSpec(
        "mem_max_usage", "int", "bytes",
        "highest mem_cgroup_usage recorded (v1 memory.max_usage_in_bytes, v2 memory.peak); "
        "null where the kernel has none", nullable=True,
    ),
    FieldSpec(
        "mem_failcnt", "int", "count",
        "times usage hit the limit, cumulative (v1 memory.failcnt); null on v2", nullable=True,
    ),
    FieldSpec(
        "mem_rss", "int", "bytes",
        "anonymous memory (v1 memory.stat total_rss, v2 anon): cAdvisor's container_memory_rss",
        nullable=True,
    ),
    FieldSpec(
        "mem_cache", "int", "bytes",
        "page cache (v1 memory.stat total_cache, v2 file): cAdvisor's container_memory_cache",
        nullable=True,
    ),
    FieldSpec(
        "mem_active_file", "int", "bytes",
        "page cache on the active list (v1 total_active_file, v2 active_file)", nullable=True,
    ),
    FieldSpec(
        "mem_inactive_file", "int", "bytes",
        "page cache on the inactive list (v1 total_inactive_file, v2 inactive_file); "
        "mem_cgroup_usage − this = cAdvisor's working set = mem_usage", nullable=True,
    ),
    FieldSpec(
        "mem_mapped_file", "int", "bytes",
        "memory-mapped page cache (v1 total_mapped_file, v2 file_mapped)", nullable=True,
    ),
    FieldSpec(
        "mem_swap", "int", "bytes",
        "swap used (v1 memory.stat total_swap, with swap accounting; v2 memory.swap.current, "
        "cgroup source only)", nullable=True,
    ),
    FieldSpec(
        "mem_pgfault", "int", "count",
        "page faults, cumulative (v1 total_pgfault, v2 pgfault)", nullable=True,
    ),
    FieldSpec(
        "mem_pgmajfault", "int", "count",
        "major page faults, cumulative (v1 total_pgmajfault, v2 pgmajfault)", nullable=True,
    ),
    FieldSpec(
        "mem_stat", "int_map", "bytes or count",
        "the cgroup's memory.stat as the kernel writes it (the API's memory_stats.stats): v1 or "
        "v2 names, which tell the version; null where the engine does not give it (Podman)",
        nullable=True,
    ),
    FieldSpec(
        "oom_kills", "int", "count",
        "processes the kernel OOM-killed in the cgroup, cumulative (v1 memory.oom_control "
        "oom_kill, v2 memory.events oom_kill); null on the API source or an older kernel",
        nullable=True,
    ),
    FieldSpec(
        "oom_events", "int", "count",
        "Docker `oom` events the collector saw for this container since it began watching it "
        "(kept over the container's restarts, not over the collector's)", nullable=True,
    ),
    FieldSpec(
        "net_interfaces", "int_maps", "bytes, packets, count",
        "per interface but lo: {name: {rx_bytes, tx_bytes, rx_packets, tx_packets, rx_errors, "
        "tx_errors, rx_dropped, tx_dropped}}, cumulative; the rx_*/tx_* fields are their sums",
        nullable=True,
    ),
    FieldSpec(
        "blk_devices", "int_maps", "bytes",
        'per block device "MAJOR:MINOR": {read_bytes, write_bytes}, cumulative; '
        "blk_read_bytes/blk_write_bytes are their sums", nullable=True,
    ),
)

STATE_FIELDS: tuple[FieldSpec, ...] = (
    *_IDENTITY,
    _INTERVAL,
    FieldSpec("status", "str", "", "one of: " + ", ".join(CONTAINER_STATUSES), max_bytes=16),
    FieldSpec(
        "health", "str", "",
        "one of: " + ", ".join(HEALTH_STATUSES) + "; null without a health check",
        nullable=True, max_bytes=16,
    ),
    FieldSpec(
        "health_failing_streak", "int", "count",
        "consecutive failed health checks; null without a health check", nullable=True,
    ),
    FieldSpec("restart_count", "int", "count", "restarts by the restart policy (Docker's)"),
    FieldSpec(
        "exit_code", "int", "", "the last exit code; null while running or never started",
        nullable=True,
    ),
    FieldSpec("oom_killed", "bool", "", "the last exit was an OOM kill"),
    FieldSpec(
        "started_at", "int", "ns", "last start, since the epoch, UTC; null when never started",
        nullable=True,
    ),
    FieldSpec(
        "finished_at", "int", "ns", "last exit, since the epoch, UTC; null when never exited",
        nullable=True,
    ),
    FieldSpec("pid", "int", "", "the main process on the host; 0 when not running"),
)

ENGINE_FIELDS: tuple[FieldSpec, ...] = (
    _IDENTITY[0], _IDENTITY[1], _IDENTITY[2], _IDENTITY[3],
    FieldSpec("timestamp", "int", "ns", "when the engine was asked, since the epoch, UTC"),
    _INTERVAL,
    FieldSpec("engine", "str", "", '"docker" or "podman": which engine answered', max_bytes=16),
    FieldSpec("server_version", "str", "", "the engine's version", max_bytes=64),
    FieldSpec("containers_running", "int", "count", "containers running"),
    FieldSpec("containers_paused", "int", "count", "containers paused"),
    FieldSpec("containers_stopped", "int", "count", "containers neither running nor paused"),
    FieldSpec("images", "int", "count", "images"),
    FieldSpec("cpus", "int", "count", "CPUs of the host"),
    FieldSpec("memory_total", "int", "bytes", "memory of the host"),
)

EVENT_FIELDS: tuple[FieldSpec, ...] = (
    *_IDENTITY,
    FieldSpec("action", "str", "", "one of: " + ", ".join(EVENT_ACTIONS), max_bytes=16),
    FieldSpec("old_name", "str", "", "the name before a rename; null otherwise", nullable=True),
)

BATCH_FIELDS: tuple[FieldSpec, ...] = (
    _IDENTITY[0], _IDENTITY[1],
    FieldSpec(
        "seq", "int", "count",
        "from a collector: the seq of the first item, the items carrying seq, seq+1, … in "
        "order; from the router: the seq of the collector's batch the route's items were "
        "taken from",
    ),
    _IDENTITY[3],
    FieldSpec(
        "timestamp", "int", "ns",
        "the newest timestamp of the items: with seq, it tells a batch sent again to a new "
        "router (docs/reliability.md) from a restarted collector's",
    ),
    FieldSpec(
        "items", "items", "",
        "the messages, in seq order: each the complete msgpack payload of a message of another "
        "kind (stats, event, state, engine; never a batch), as msgpack binary",
    ),
    FieldSpec(
        "containers", "identities", "",
        "the containers the items are about, each [id, name, image, labels]: the router routes "
        "an item by its entry without reading the item; null from the router (routed already)",
        nullable=True,
    ),
    FieldSpec(
        "item_containers", "indexes", "",
        f"per item, the index of its entry in containers, or {NO_CONTAINER} for an item about "
        "no container (engine); as many as items; null from the router", nullable=True,
    ),
)


@dataclass(frozen=True, slots=True)
class ContainerMessage:
    """What every message says of its container and its collector (the _IDENTITY fields)."""

    seq: int
    host: str
    id: str
    name: str
    image: str
    labels: dict[str, str]
    timestamp: int


@dataclass(frozen=True, slots=True)
class ContainerStats(ContainerMessage):
    """One sample of one container's resource figures (``kind: "stats"``)."""

    cpu_percent: float | None
    cpu_usage_ns: int
    online_cpus: int
    mem_usage: int
    mem_limit: int
    mem_percent: float | None
    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int
    rx_errors: int
    tx_errors: int
    rx_dropped: int
    tx_dropped: int
    blk_read_bytes: int
    blk_write_bytes: int
    pids: int
    # Version 1.1 on: null (the default) only in a 1.0 collector's messages,
    # which have none of them.
    interval_s: float | None = None
    cpu_user_ns: int | None = None
    cpu_system_ns: int | None = None
    cpu_periods: int | None = None
    cpu_throttled_periods: int | None = None
    cpu_throttled_ns: int | None = None
    mem_cgroup_usage: int | None = None
    mem_max_usage: int | None = None
    mem_failcnt: int | None = None
    mem_rss: int | None = None
    mem_cache: int | None = None
    mem_active_file: int | None = None
    mem_inactive_file: int | None = None
    mem_mapped_file: int | None = None
    mem_swap: int | None = None
    mem_pgfault: int | None = None
    mem_pgmajfault: int | None = None
    mem_stat: dict[str, int] | None = None
    oom_kills: int | None = None
    oom_events: int | None = None
    net_interfaces: dict[str, dict[str, int]] | None = None
    blk_devices: dict[str, dict[str, int]] | None = None
    kind: str = field(default="stats", init=False)
    v: str = field(default=SCHEMA_VERSION, init=False)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _STATS_NAMES}


@dataclass(frozen=True, slots=True)
class ContainerEvent(ContainerMessage):
    """A container lifecycle change (``kind: "event"``), so that sinks can forget a container."""

    action: str
    old_name: str | None = None
    kind: str = field(default="event", init=False)
    v: str = field(default=SCHEMA_VERSION, init=False)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _EVENT_NAMES}


@dataclass(frozen=True, slots=True)
class ContainerState(ContainerMessage):
    """A container's lifecycle state (``kind: "state"``): on every change, and every interval
    for each container that exists, running or not."""

    interval_s: float
    status: str
    health: str | None
    health_failing_streak: int | None
    restart_count: int
    exit_code: int | None
    oom_killed: bool
    started_at: int | None
    finished_at: int | None
    pid: int
    kind: str = field(default="state", init=False)
    v: str = field(default=SCHEMA_VERSION, init=False)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _STATE_NAMES}


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """One host's engine counts (``kind: "engine"``), once per interval; no container."""

    seq: int
    host: str
    timestamp: int
    interval_s: float
    engine: str
    server_version: str
    containers_running: int
    containers_paused: int
    containers_stopped: int
    images: int
    cpus: int
    memory_total: int
    kind: str = field(default="engine", init=False)
    v: str = field(default=SCHEMA_VERSION, init=False)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _ENGINE_NAMES}


@dataclass(frozen=True, slots=True)
class ContainerIdentity:
    """What the router's selectors read of a container: an entry of a batch's containers."""

    host: str
    id: str
    name: str
    image: str
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class Batch:
    """Many messages of one collector in one payload (``kind: "batch"``, version 1.2).

    ``items`` are the messages' payloads as they were encoded, read one by one by whoever
    needs them (``decode``): an entry that is not a valid message costs only itself. The
    entries of ``items`` and ``item_containers`` are unchecked as they arrived; readers check
    each (``identity_of``, ``decode``).
    """

    seq: int
    host: str
    timestamp: int
    items: list[Any]
    containers: list[Any] | None = None
    item_containers: list[Any] | None = None
    kind: str = field(default="batch", init=False)
    v: str = field(default=SCHEMA_VERSION, init=False)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _BATCH_NAMES}


Message = ContainerStats | ContainerEvent | ContainerState | EngineInfo
# The messages about one container, routed by its labels, name, image and host (and a batch's
# entry for a container, which the router routes its items by).
ContainerScoped = ContainerStats | ContainerEvent | ContainerState | ContainerIdentity

_STATS_NAMES = tuple(spec.name for spec in STATS_FIELDS)
_EVENT_NAMES = tuple(spec.name for spec in EVENT_FIELDS)
_STATE_NAMES = tuple(spec.name for spec in STATE_FIELDS)
_ENGINE_NAMES = tuple(spec.name for spec in ENGINE_FIELDS)
_BATCH_NAMES = tuple(spec.name for spec in BATCH_FIELDS)
_SPECS = {"stats": STATS_FIELDS, "event": EVENT_FIELDS, "state": STATE_FIELDS,
          "engine": ENGINE_FIELDS}
_CLASSES: dict[str, Any] = {"stats": ContainerStats, "event": ContainerEvent,
                            "state": ContainerState, "engine": EngineInfo, "batch": Batch}
_FLOAT_NAMES = {kind: tuple(spec.name for spec in specs if spec.type == "float")
                for kind, specs in _SPECS.items()}
_INIT_NAMES = {
    kind: tuple(f.name for f in fields(cls) if f.init) for kind, cls in _CLASSES.items()
}


def encode(message: Message) -> bytes:
    """The msgpack payload of a message."""
    return msgpack.packb(message.to_dict(), use_bin_type=True)


def encode_batch(batch: Batch) -> bytes:
    """The msgpack payload of a batch; its items are put in as they are (binary)."""
    return msgpack.packb(batch.to_dict(), use_bin_type=True)


def decode(payload: bytes) -> Message:
    """Parse and validate a payload of one message (a batch is refused: ``decode_any``);
    raises MalformedMessage saying what is wrong, and nothing else, whatever the bytes."""
    message = _decode_checked_in_c(payload)
    if message is not None:
        return message
    raw = _unpack(payload)
    try:
        return from_dict(raw)
    except MalformedMessage as exc:
        exc.host = valid_host(raw.get("host")) if isinstance(raw, dict) else None
        raise


def decode_any(payload: bytes) -> Message | Batch:
    """Like ``decode``, and a batch too (its envelope checked; its items left unread)."""
    message = _decode_checked_in_c(payload)
    if message is not None:
        return message
    raw = _unpack(payload)
    try:
        if type(raw) is dict and raw.get("kind") == "batch":
            return batch_from_dict(raw)
        return from_dict(raw)
    except MalformedMessage as exc:
        exc.host = valid_host(raw.get("host")) if isinstance(raw, dict) else None
        raise


def decode_all(payload: bytes) -> list[Message]:
    """The messages a payload carries: itself, or a batch's items; MalformedMessage when it or
    any item is not valid (a tool's reader; the router and sinks read a batch item by item)."""
    message = decode_any(payload)
    if isinstance(message, Batch):
        return [decode(item) for item in message.items]
    return [message]


def _unpack(payload: Any) -> Any:
    if type(payload) is not bytes:  # a batch's item may be any msgpack value
        raise MalformedMessage(f"expected msgpack binary, got {type(payload).__name__}")
    try:
        return msgpack.unpackb(payload, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise MalformedMessage(f"not msgpack: {exc}") from None


def batch_from_dict(raw: Any) -> Batch:
    """Validate a batch's envelope: every field but the entries of its lists."""
    if not isinstance(raw, dict):
        raise MalformedMessage(f"expected a map, got {type(raw).__name__}")
    check_version(raw.get("v"))
    if raw.get("kind") != "batch":
        raise MalformedMessage(f"expected a batch, got kind {raw.get('kind')!r:.60}")
    _check_fields(raw, _BATCH_CHECKS)
    items, indexes = raw["items"], raw.get("item_containers")
    if indexes is not None and len(indexes) != len(items):
        raise MalformedMessage(
            f"{len(indexes)} item_containers for {len(items)} items: they must be as many")
    return Batch(raw["seq"], raw["host"], raw["timestamp"], items, raw.get("containers"),
                 indexes)


def identity_of(host: str, entry: Any) -> ContainerIdentity:
    """One entry of a batch's containers, checked like the same fields of a message."""
    if type(entry) is not list or len(entry) != 4:
        raise MalformedMessage("a containers entry is not [id, name, image, labels]")
    for name, value in zip(("id", "name", "image"), entry, strict=False):
        problem = _text_problem(value, MAX_TEXT_BYTES)
        if problem is not None:
            raise MalformedMessage(f"containers entry's {name} {problem}: {value!r:.60}")
    problem = _labels_check(entry[3])
    if problem is not None:
        raise MalformedMessage(f"containers entry's labels {problem}")
    return ContainerIdentity(host, entry[0], entry[1], entry[2], entry[3])


def from_dict(raw: Any) -> Message:
    """Validate a decoded map against the schema; unknown keys are ignored."""
    if not isinstance(raw, dict):
        raise MalformedMessage(f"expected a map, got {type(raw).__name__}")
    check_version(raw.get("v"))
    kind = raw.get("kind")
    if kind == "batch":
        raise MalformedMessage("a batch where one message was expected (a batch's items are "
                               "messages of the other kinds)")
    if type(kind) is not str or kind not in _CHECKS:
        raise MalformedMessage(f"unknown kind {kind!r:.60}")
    _check_fields(raw, _CHECKS[kind])
    if kind == "event" and raw["action"] not in EVENT_ACTIONS:
        raise MalformedMessage(f"unknown event action {raw['action']!r}")
    values = {name: raw.get(name) for name in _INIT_NAMES[kind]}
    for name in _FLOAT_NAMES[kind]:  # an integer where a float belongs reads as that float
        number = values[name]
        if type(number) is int:
            values[name] = float(number)
    return _CLASSES[kind](**values)


def _check_fields(raw: dict, checks: tuple[tuple[Any, ...], ...]) -> None:
    for name, nullable, low, high, check in checks:
        value = raw.get(name)
        if value is None:
            if nullable:
                continue
            raise MalformedMessage(
                f"field {name!r} is null" if name in raw else f"missing field {name!r}")
        # Integers are most fields: checked inline, the rest by the field's check function.
        if low is not None and type(value) is int and low <= value <= high:
            continue
        problem = check(value)
        if problem is not None:
            raise MalformedMessage(f"field {name!r} {problem}: {value!r:.60}")


_VERSION = re.compile(r"(\d{1,6})\.\d{1,6}", re.ASCII)


def check_version(version: Any) -> None:
    """Accept any minor of our major; a newer (or unparseable) major is rejected."""
    if not isinstance(version, str):
        raise MalformedMessage(f"missing or non-string schema version {version!r:.60}")
    parsed = _VERSION.fullmatch(version)
    if parsed is None:
        raise MalformedMessage(f"unparseable schema version {version!r:.60}")
    if int(parsed.group(1)) != SCHEMA_MAJOR:
        raise MalformedMessage(
            f"schema version {version} is not readable by this version ({SCHEMA_VERSION})"
        )


def valid_host(value: Any) -> str | None:
    """``value`` when it is a host name the schema accepts, else None."""
    if type(value) is str and value and _text_problem(value, MAX_HOST_BYTES) is None:
        return value
    return None


def _utf8_bytes_over(text: str, limit: int) -> bool:
    # A character is at most 4 bytes in UTF-8: short strings need no encoding to be measured.
    if len(text) * 4 <= limit:
        return False
    return len(text) > limit or len(text.encode("utf-8", "surrogatepass")) > limit


def _text_problem(value: Any, limit: int) -> str | None:
    if type(value) is not str:
        return "has the wrong type"
    if _utf8_bytes_over(value, limit):
        return f"is longer than {limit} bytes"
    return None


def _int_check(spec: FieldSpec) -> Callable[[Any], str | None]:
    low, high = spec.minimum, spec.maximum

    def check(value: Any) -> str | None:
        if type(value) is not int:  # exact types: a bool is not an int here
            return "has the wrong type"
        if not low <= value <= high:
            return f"is out of range ({spec.limit})"
        return None

    return check


def _float_check(value: Any) -> str | None:
    actual = type(value)
    if actual is int:  # msgpack integers are 64-bit: every one is a finite float
        return None
    if actual is not float:
        return "has the wrong type"
    return None if math.isfinite(value) else "is not finite"


def _labels_check(value: Any) -> str | None:
    if type(value) is not dict:
        return "has the wrong type"
    if len(value) > MAX_LABELS:
        return f"has more than {MAX_LABELS} labels"
    for key, text in value.items():
        if type(key) is not str or type(text) is not str:
            return "has the wrong type"
        if _utf8_bytes_over(key, MAX_LABEL_KEY_BYTES):
            return f"has a key longer than {MAX_LABEL_KEY_BYTES} bytes"
        if _utf8_bytes_over(text, MAX_LABEL_VALUE_BYTES):
            return f"has a value longer than {MAX_LABEL_VALUE_BYTES} bytes"
    return None


def _bool_check(value: Any) -> str | None:
    return None if type(value) is bool else "has the wrong type"


def _int_map_problem(value: Any) -> str | None:
    if type(value) is not dict:
        return "has the wrong type"
    if len(value) > MAX_MAP_ENTRIES:
        return f"has more than {MAX_MAP_ENTRIES} entries"
    for key, number in value.items():
        if type(key) is not str or type(number) is not int:
            return "has the wrong type"
        if _utf8_bytes_over(key, MAX_MAP_KEY_BYTES):
            return f"has a key longer than {MAX_MAP_KEY_BYTES} bytes"
        if not INT_MIN <= number <= INT_MAX:
            return f"has a value out of range ({INT_MIN} … 2^63−1)"
    return None


def _int_maps_problem(value: Any) -> str | None:
    if type(value) is not dict:
        return "has the wrong type"
    if len(value) > MAX_MAP_ENTRIES:
        return f"has more than {MAX_MAP_ENTRIES} entries"
    for key, inner in value.items():
        if type(key) is not str:
            return "has the wrong type"
        if _utf8_bytes_over(key, MAX_MAP_KEY_BYTES):
            return f"has a key longer than {MAX_MAP_KEY_BYTES} bytes"
        problem = _int_map_problem(inner)
        if problem is not None:
            return f"at {key[:40]!r} {problem}"
    return None


def _list_check(least: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if type(value) is not list:
            return "has the wrong type"
        if not least <= len(value) <= MAX_BATCH_ITEMS:
            return f"has {len(value)} entries ({least} … {MAX_BATCH_ITEMS} allowed)"
        return None

    return check


def _check_for(spec: FieldSpec) -> Callable[[Any], str | None]:
    if spec.type == "int":
        return _int_check(spec)
    if spec.type == "float":
        return _float_check
    if spec.type == "bool":
        return _bool_check
    if spec.type == "labels":
        return _labels_check
    if spec.type == "int_map":
        return _int_map_problem
    if spec.type == "int_maps":
        return _int_maps_problem
    if spec.type in ("items", "identities", "indexes"):
        return _list_check(1 if spec.type == "items" else 0)
    return lambda value: _text_problem(value, spec.max_bytes)


# Every message is validated, in the router and in every sink: the field table is turned into
# (name, nullable, integer range or None, check) once, so the per-message loop does no lookups
# in FieldSpecs.
def _checks(specs: tuple[FieldSpec, ...]) -> tuple[tuple[Any, ...], ...]:
    return tuple(
        (spec.name, spec.nullable,
         spec.minimum if spec.type == "int" else None, spec.maximum, _check_for(spec))
        for spec in specs
    )


_CHECKS = {kind: _checks(specs) for kind, specs in _SPECS.items()}
_BATCH_CHECKS = _checks(BATCH_FIELDS)


# The stats fields a collector computes from two readings, and those its loop adds (its
# interval, the oom events it counted); every other stats field beyond the identity is a
# figure read as it is, which a collector's reading holds under the same name.
COMPUTED_STATS = ("cpu_percent", "mem_percent")
COLLECTOR_STATS = ("interval_s", "oom_events")
READ_FIGURES: tuple[str, ...] = tuple(
    spec.name for spec in STATS_FIELDS[len(_IDENTITY):]
    if spec.name not in COMPUTED_STATS + COLLECTOR_STATS
)


# Decoding in C: msgspec reads a payload straight into the message's dataclass and checks each
# field's type and bounds as it goes (an item of a fleet batch: 6 µs, against 23 µs unpacked
# and checked in Python, which was most of what a sink spent its time on). The bounds come
# from the field table: at import, each class's annotations are replaced by the table's
# types with their bounds. What msgspec refuses goes to the Python path above, which decides
# and says what is wrong, so both paths accept exactly the same payloads: msgspec counts a
# string's characters, not its UTF-8 bytes, so a field's string gets its bound in characters
# (a string over it is surely too long) and its bytes are measured after, when its length
# does not settle it; the keys and values of labels and maps get the bound a character can
# take at 4 bytes (a string within it surely fits; a longer one is left to the Python path).
_FLOAT_MAX = sys.float_info.max  # the bounds reject inf and NaN: floats are finite
_Count = Annotated[int, msgspec.Meta(ge=INT_MIN, le=INT_MAX)]
_MapKey = Annotated[str, msgspec.Meta(max_length=MAX_MAP_KEY_BYTES // 4)]
_IntMap = Annotated[dict[_MapKey, _Count], msgspec.Meta(max_length=MAX_MAP_ENTRIES)]
_BOUNDED: dict[str, Any] = {
    "float": Annotated[float, msgspec.Meta(ge=-_FLOAT_MAX, le=_FLOAT_MAX)],
    "bool": bool,
    "labels": Annotated[
        dict[Annotated[str, msgspec.Meta(max_length=MAX_LABEL_KEY_BYTES // 4)],
             Annotated[str, msgspec.Meta(max_length=MAX_LABEL_VALUE_BYTES // 4)]],
        msgspec.Meta(max_length=MAX_LABELS)],
    "int_map": _IntMap,
    "int_maps": Annotated[dict[_MapKey, _IntMap], msgspec.Meta(max_length=MAX_MAP_ENTRIES)],
}


def _bounded_type(spec: FieldSpec) -> Any:
    if spec.type == "int":
        bounded: Any = Annotated[int, msgspec.Meta(ge=spec.minimum, le=spec.maximum)]
    elif spec.type == "str":
        bounded = Annotated[str, msgspec.Meta(max_length=spec.max_bytes)]
    else:
        bounded = _BOUNDED[spec.type]
    return bounded | None if spec.nullable else bounded


def _bind_bounds(cls: type, specs: tuple[FieldSpec, ...]) -> None:
    by_name = {spec.name: spec for spec in specs}
    for klass in cls.__mro__:
        declared = inspect.get_annotations(klass)  # the class's own, never a base's
        if any(name in by_name for name in declared):
            klass.__annotations__ = {
                name: _bounded_type(by_name[name]) if name in by_name else declared_type
                for name, declared_type in declared.items()}


class _Head(msgspec.Struct):
    """What says which class a payload is read into (the rest of it is skipped)."""

    v: str
    kind: str


_HEAD = msgspec.msgpack.Decoder(_Head)
_C_DECODERS: dict[str, msgspec.msgpack.Decoder[Any]] = {}
# (name, bound in bytes) of each string field a kind has, measured after decoding
_C_TEXTS: dict[str, tuple[tuple[str, int], ...]] = {}
for _kind, _specs in _SPECS.items():
    _bind_bounds(_CLASSES[_kind], _specs)
    _C_DECODERS[_kind] = msgspec.msgpack.Decoder(_CLASSES[_kind])
    # (not v and kind: what they may be is checked more narrowly than their bound)
    _C_TEXTS[_kind] = tuple((spec.name, spec.max_bytes) for spec in _specs
                            if spec.type == "str" and spec.name not in ("v", "kind"))


def _decode_checked_in_c(payload: Any) -> Message | None:
    """The message a payload holds when msgspec reads it with every check passed; None when
    it refuses (then the Python path decides). Never raises."""
    if type(payload) is not bytes:
        return None
    try:
        head = _HEAD.decode(payload)
        decoder = _C_DECODERS.get(head.kind)
        if decoder is None:
            return None
        message = decoder.decode(payload)
    except Exception:  # msgspec's errors for what it refuses; the Python path says why
        return None
    for name, limit in _C_TEXTS[head.kind]:
        text = getattr(message, name)
        if text is not None and len(text) * 4 > limit and _utf8_bytes_over(text, limit):
            return None
    if head.kind == "event" and message.action not in EVENT_ACTIONS:
        return None
    try:
        check_version(head.v)
    except MalformedMessage:
        return None
    if head.v != SCHEMA_VERSION:  # a message reads as of this version, whichever it came in
        object.__setattr__(message, "v", SCHEMA_VERSION)
    return message
