"""Readings for tests: every figure the wire carries, zero unless given."""

from __future__ import annotations

from statspout import wire
from statspout.collector.figures import Reading


def make_reading(timestamp: int = 0, system_cpu_ns: int | None = None, **figures: int) -> Reading:
    unknown = figures.keys() - set(wire.READ_FIGURES)
    if unknown:
        raise TypeError(f"not figures of a reading: {sorted(unknown)}")
    return Reading(timestamp, system_cpu_ns,
                   {name: figures.get(name, 0) for name in wire.READ_FIGURES})


def with_figures(reading: Reading, timestamp: int | None = None,
                 system_cpu_ns: int | None = None, **figures: int) -> Reading:
    """The reading with some figures (and its time or system CPU counter) changed."""
    return Reading(
        reading.timestamp if timestamp is None else timestamp,
        reading.system_cpu_ns if system_cpu_ns is None else system_cpu_ns,
        {**reading.figures, **figures},
    )
