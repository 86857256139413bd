"""Readings for tests: every figure the wire carries, zero (an empty map) unless given."""

from __future__ import annotations

from typing import Any

from statspout import wire
from statspout.collector.figures import Reading

_EMPTY = {"int_maps": dict, "int_map": dict}
_SPECS = {spec.name: spec for spec in wire.STATS_FIELDS}


def make_reading(timestamp: int = 0, **figures: Any) -> Reading:
    unknown = figures.keys() - set(wire.READ_FIGURES)
    if unknown:
        raise TypeError(f"not figures of a reading: {sorted(unknown)}")
    return Reading(timestamp, {
        name: figures[name] if name in figures else _EMPTY.get(_SPECS[name].type, int)()
        for name in wire.READ_FIGURES
    })


def with_figures(reading: Reading, timestamp: int | None = None, **figures: Any) -> Reading:
    """The reading with some figures (and its time) changed."""
    return Reading(reading.timestamp if timestamp is None else timestamp,
                   {**reading.figures, **figures})
