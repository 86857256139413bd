"""The wire schema: the one definition of every message that crosses a socket.

A message is a msgpack map with string keys. ``v`` is the schema version "MAJOR.MINOR": a
reader accepts every minor version of its major (newer minors only add fields, which readers
ignore) and rejects a newer major. ``docs/wire-schema.md`` is this module written out as tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import msgpack

SCHEMA_MAJOR = 1
SCHEMA_MINOR = 0
SCHEMA_VERSION = f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}"

# Lifecycle actions a collector publishes as `kind: "event"`.
EVENT_ACTIONS = ("start", "stop", "rename", "destroy", "pause", "unpause")


class MalformedMessage(ValueError):
    """A payload that is not a message of this schema; the reason is the exception text."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What one wire field holds: used to validate payloads and to write the docs table."""

    name: str
    type: str  # "int" (64-bit), "float", "str", "labels" (map str → str)
    unit: str
    description: str
    nullable: bool = False


_IDENTITY = (
    FieldSpec("v", "str", "", 'schema version "MAJOR.MINOR"'),
    FieldSpec("kind", "str", "", '"stats" or "event"'),
    FieldSpec("seq", "int", "count", "per collector, +1 for every message it publishes"),
    FieldSpec("host", "str", "", "the collector's host name (--host)"),
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

STATS_FIELDS: tuple[FieldSpec, ...] = _IDENTITY + (
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
)

EVENT_FIELDS: tuple[FieldSpec, ...] = _IDENTITY + (
    FieldSpec("action", "str", "", "one of: " + ", ".join(EVENT_ACTIONS)),
    FieldSpec("old_name", "str", "", "the name before a rename; null otherwise", nullable=True),
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


Message = ContainerStats | ContainerEvent

_STATS_NAMES = tuple(spec.name for spec in STATS_FIELDS)
_EVENT_NAMES = tuple(spec.name for spec in EVENT_FIELDS)
_INIT_NAMES = {
    "stats": tuple(f.name for f in fields(ContainerStats) if f.init),
    "event": tuple(f.name for f in fields(ContainerEvent) if f.init),
}
_SPECS = {"stats": STATS_FIELDS, "event": EVENT_FIELDS}
_CLASSES = {"stats": ContainerStats, "event": ContainerEvent}


def encode(message: Message) -> bytes:
    """The msgpack payload of a message."""
    return msgpack.packb(message.to_dict(), use_bin_type=True)


def decode(payload: bytes) -> Message:
    """Parse and validate a payload; raises MalformedMessage saying what is wrong."""
    try:
        raw = msgpack.unpackb(payload, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise MalformedMessage(f"not msgpack: {exc}") from None
    return from_dict(raw)


def from_dict(raw: Any) -> Message:
    """Validate a decoded map against the schema; unknown keys are ignored."""
    if not isinstance(raw, dict):
        raise MalformedMessage(f"expected a map, got {type(raw).__name__}")
    check_version(raw.get("v"))
    kind = raw.get("kind")
    specs = _SPECS.get(kind)  # type: ignore[arg-type]
    if specs is None:
        raise MalformedMessage(f"unknown kind {kind!r}")
    for name, expected, nullable in _CHECKS[kind]:
        value = raw.get(name)
        if value is None:
            if nullable:
                continue
            raise MalformedMessage(
                f"field {name!r} is null" if name in raw else f"missing field {name!r}")
        if not _has_type(value, expected):
            raise MalformedMessage(f"field {name!r} has the wrong type: {value!r:.60}")
    if kind == "event" and raw["action"] not in EVENT_ACTIONS:
        raise MalformedMessage(f"unknown event action {raw['action']!r}")
    return _CLASSES[kind](**{name: raw.get(name) for name in _INIT_NAMES[kind]})


def check_version(version: Any) -> None:
    """Accept any minor of our major; a newer (or unparseable) major is rejected."""
    if not isinstance(version, str):
        raise MalformedMessage(f"missing or non-string schema version {version!r}")
    major, _, _minor = version.partition(".")
    if not major.isdigit():
        raise MalformedMessage(f"unparseable schema version {version!r}")
    if int(major) != SCHEMA_MAJOR:
        raise MalformedMessage(
            f"schema version {version} is not readable by this version ({SCHEMA_VERSION})"
        )


_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
_PYTHON_TYPES = {"int": int, "float": float, "str": str, "labels": dict}
# Every message is validated, in the router and in every sink: the field table is turned into
# (name, Python type, nullable) once, so the per-message loop does no lookups in FieldSpecs.
_CHECKS = {
    kind: tuple((spec.name, _PYTHON_TYPES[spec.type], spec.nullable) for spec in specs)
    for kind, specs in _SPECS.items()
}


def _has_type(value: Any, expected: type) -> bool:
    actual = type(value)  # exact types: a bool is not an int here
    if expected is int:
        return actual is int and _INT64_MIN <= value <= _UINT64_MAX
    if expected is float:
        return actual is float or actual is int
    if expected is str:
        return actual is str
    return actual is dict and all(type(k) is str and type(v) is str for k, v in value.items())


# The stats fields a collector computes from two readings; every other stats field beyond the
# identity is a figure read as it is, which a collector's reading holds under the same name.
COMPUTED_STATS = ("cpu_percent", "mem_percent")
READ_FIGURES: tuple[str, ...] = tuple(
    spec.name for spec in STATS_FIELDS[len(_IDENTITY):] if spec.name not in COMPUTED_STATS
)
