"""The wire schema: round trips, 64-bit integers, unknown fields, versions, malformed input."""

from __future__ import annotations

import msgpack
import pytest
from support.samples import make_event, make_stats

from statspout import wire


def test_stats_round_trip_keeps_every_field_exact():
    sample = make_stats(rx_bytes=2**63 - 1, tx_bytes=2**40, cpu_percent=None,
                        labels={"naïve key": "välue, with = and \"quotes\""})
    assert wire.decode(wire.encode(sample)) == sample


def test_event_round_trip():
    event = make_event("rename", old_name="before")
    assert wire.decode(wire.encode(event)) == event


def test_payload_carries_the_documented_names():
    raw = msgpack.unpackb(wire.encode(make_stats()))
    assert list(raw) == [spec.name for spec in wire.STATS_FIELDS]
    assert raw["v"] == wire.SCHEMA_VERSION and raw["kind"] == "stats"


def test_unknown_fields_and_newer_minor_versions_are_read():
    raw = make_stats().to_dict() | {"v": f"{wire.SCHEMA_MAJOR}.99", "gpu_percent": 3.0}
    assert wire.decode(msgpack.packb(raw)).name == "web"


def test_newer_major_version_is_rejected():
    raw = make_stats().to_dict() | {"v": f"{wire.SCHEMA_MAJOR + 1}.0"}
    with pytest.raises(wire.MalformedMessage, match="not readable"):
        wire.decode(msgpack.packb(raw))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"rx_bytes": "12"}, "wrong type"),
        ({"rx_bytes": 1.5}, "wrong type"),
        ({"rx_bytes": True}, "wrong type"),
        ({"labels": {"a": 1}}, "wrong type"),
        ({"kind": "gossip"}, "unknown kind"),
        ({"v": None}, "schema version"),
        ({"name": None}, "is null"),
    ],
)
def test_malformed_fields_say_what_is_wrong(change, reason):
    with pytest.raises(wire.MalformedMessage, match=reason):
        wire.decode(msgpack.packb(make_stats().to_dict() | change))


def test_missing_field_is_named():
    raw = make_stats().to_dict()
    del raw["mem_usage"]
    with pytest.raises(wire.MalformedMessage, match="missing field 'mem_usage'"):
        wire.decode(msgpack.packb(raw))


def test_bytes_that_are_not_msgpack():
    with pytest.raises(wire.MalformedMessage, match="not msgpack|expected a map"):
        wire.decode(b"\xc1garbage")


def test_unknown_event_action():
    with pytest.raises(wire.MalformedMessage, match="unknown event action"):
        wire.decode(msgpack.packb(make_event().to_dict() | {"action": "explode"}))


# Version 1.1: maps, a 1.0 collector's messages, the new kinds

# The stats fields of 1.1 begin with interval_s.
NEW_IN_1_1 = wire.STATS_FIELDS[[s.name for s in wire.STATS_FIELDS].index("interval_s"):]


def test_per_key_maps_round_trip_exact():
    sample = make_stats(
        net_interfaces={"eth0": {"rx_bytes": 2**63, "tx_bytes": 1}},
        blk_devices={"8:0": {"read_bytes": 4096, "write_bytes": 0}},
        mem_stat={"total_cache": 2**40}, interval_s=5.0, oom_events=0,
    )
    assert wire.decode(wire.encode(sample)) == sample


@pytest.mark.parametrize("change", [
    {"net_interfaces": {"eth0": {"rx_bytes": "1"}}},
    {"net_interfaces": {"eth0": 1}},
    {"net_interfaces": {"eth0": {"rx_bytes": 1.0}}},
    {"mem_stat": {"cache": True}},
    {"mem_stat": {str(n): n for n in range(wire.MAX_MAP_ENTRIES + 1)}},
    {"blk_devices": {f"8:{n}": {} for n in range(wire.MAX_MAP_ENTRIES + 1)}},
])
def test_maps_are_checked_and_bounded(change):
    with pytest.raises(wire.MalformedMessage, match="wrong type"):
        wire.decode(msgpack.packb(make_stats().to_dict() | change))


def test_a_1_0_collector_s_stats_read_with_the_new_fields_null():
    raw = {name: value for name, value in make_stats().to_dict().items()
           if name not in {spec.name for spec in NEW_IN_1_1}} | {"v": "1.0"}
    sample = wire.decode(msgpack.packb(raw))
    assert isinstance(sample, wire.ContainerStats)
    assert sample.interval_s is None and sample.net_interfaces is None


def test_every_1_1_stats_field_is_nullable():
    assert len(NEW_IN_1_1) > 20 and all(spec.nullable for spec in NEW_IN_1_1)
