"""The wire schema: round trips, 64-bit integers, unknown fields, versions, malformed input."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.samples import make_engine, make_event, make_state, make_stats

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
    with pytest.raises(wire.MalformedMessage, match=r"not msgpack|expected a map"):
        wire.decode(b"\xc1garbage")


def test_unknown_event_action():
    with pytest.raises(wire.MalformedMessage, match="unknown event action"):
        wire.decode(msgpack.packb(make_event().to_dict() | {"action": "explode"}))


# Each of these killed the router or a sink, or passed the checks, before decoding was total
# and ranges were part of the schema (issue 8).
@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"v": "1.0", "kind": [1]}, "unknown kind"),  # unhashable kind: TypeError before
        ({"v": "1.0", "kind": {"a": 1}}, "unknown kind"),
        ({"v": "².0"}, "unparseable schema version"),  # int() of a non-ASCII digit
        ({"v": "9" * 5000 + ".0"}, "unparseable schema version"),  # int() of 5,000 digits
        ({"v": "1" * 5000}, "unparseable schema version"),
        ({"v": ["1.0"]}, "schema version"),
    ],
)
def test_messages_that_used_to_raise_other_exceptions(raw, reason):
    with pytest.raises(wire.MalformedMessage, match=reason):
        wire.decode(msgpack.packb(raw))


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 2**64 - 1},  # OverflowError in MongoDB before
        {"seq": 2**63},
        {"seq": -1},
        {"mem_limit": -1},
        {"timestamp": -5},
        {"rx_bytes": -(2**63)},
    ],
)
def test_integers_out_of_range_are_refused(change):
    with pytest.raises(wire.MalformedMessage, match="out of range"):
        wire.decode(msgpack.packb(make_stats().to_dict() | change))


def test_integer_range_ends_are_accepted():
    sample = make_stats(seq=0, rx_bytes=wire.INT_MAX, mem_limit=0)
    assert wire.decode(wire.encode(sample)) == sample


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"cpu_percent": float("nan")}, "not finite"),
        ({"mem_percent": float("inf")}, "not finite"),
        ({"host": "h" * 256}, "longer than 255 bytes"),
        ({"host": "é" * 128}, "longer than 255 bytes"),  # 256 bytes in UTF-8
        ({"name": "n" * 1025}, "longer than 1024 bytes"),
        ({"image": "i" * 1025}, "longer than 1024 bytes"),
        ({"labels": {"k": "v" * 4097}}, "value longer than 4096 bytes"),
        ({"labels": {"k" * 1025: "v"}}, "key longer than 1024 bytes"),
        ({"labels": {f"k{i}": "v" for i in range(257)}}, "more than 256 labels"),
        ({"labels": {"a": [1]}}, "wrong type"),  # unhashable values anywhere
        ({"labels": [["a", "b"]]}, "wrong type"),
        ({"name": {"x": [1]}}, "wrong type"),
    ],
)
def test_bounds_and_finite_floats(change, reason):
    with pytest.raises(wire.MalformedMessage, match=reason):
        wire.decode(msgpack.packb(make_stats().to_dict() | change))


def test_strings_at_their_bounds_are_accepted():
    sample = make_stats(host="h" * 255, labels={f"k{i}": "v" * 4096 for i in range(256)})
    assert wire.decode(wire.encode(sample)) == sample


def test_malformed_message_names_its_host_only_when_valid():
    with pytest.raises(wire.MalformedMessage) as caught:
        wire.decode(msgpack.packb({"v": "1.0", "kind": "stats", "host": "h2"}))
    assert caught.value.host == "h2"
    for host in ("x" * 256, "", ["h2"], 7):
        with pytest.raises(wire.MalformedMessage) as caught:
            wire.decode(msgpack.packb({"v": "1.0", "kind": [1], "host": host}))
        assert caught.value.host is None


def _msgpack_values():
    scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
               | st.text(max_size=20) | st.binary(max_size=20))
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10), children, max_size=4),
        max_leaves=12,
    )


def _mutated_samples():
    """A valid sample with one field replaced by any msgpack value."""
    names = [spec.name for spec in wire.STATS_FIELDS]
    return st.tuples(st.sampled_from(names), _msgpack_values()).map(
        lambda change: make_stats().to_dict() | {change[0]: change[1]})


@settings(max_examples=3000, deadline=None, database=None)
@given(st.one_of(st.binary(max_size=200),
                 _msgpack_values().map(lambda v: msgpack.packb(v, use_bin_type=True)),
                 _mutated_samples().map(lambda v: msgpack.packb(v, use_bin_type=True))))
def test_decoding_is_total(payload):
    try:
        message = wire.decode(payload)
    except wire.MalformedMessage:
        return
    assert wire.decode(wire.encode(message)) == message


def _python_path(payload: bytes) -> wire.Message | None:
    """What the checks written in Python make of a payload (None: malformed)."""
    try:
        return wire.from_dict(wire._unpack(payload))
    except wire.MalformedMessage:
        return None


def _full_sample() -> wire.ContainerStats:
    return make_stats(interval_s=1.0, cpu_user_ns=5, mem_stat={"cache": 1, "rss": 2},
                      net_interfaces={"eth0": {"rx_bytes": 3}}, blk_devices={"8:0": {"read": 4}})


def _texts_near_their_bounds():
    """Strings whose length in characters and in UTF-8 bytes fall either side of a bound."""
    return st.sampled_from([
        "a" * 63, "a" * 64, "é" * 127, "é" * 128, "€" * 85, "€" * 86, "😀" * 63, "😀" * 64,
        "a" * 255, "a" * 256, "é" * 512, "é" * 513, "😀" * 256, "😀" * 257, "a" * 1024,
        "a" * 1025, "a" * 4096, "€" * 1366, "", "running"])


def _mutated_messages():
    """A valid message of any kind with one field, label or map entry replaced."""
    bases = [_full_sample().to_dict(), make_event().to_dict(), make_state().to_dict(),
             make_engine().to_dict()]
    values = _msgpack_values() | _texts_near_their_bounds() | st.sampled_from(
        [2**63 - 1, 2**63, 0, -1, 1.5, float("nan"), float("inf"), True, None])

    @st.composite
    def mutated(draw: st.DrawFn) -> dict:
        raw = dict(draw(st.sampled_from(bases)))
        key = draw(st.sampled_from(sorted(raw)))
        where = draw(st.sampled_from(["field", "label key", "label value", "map key",
                                      "map value", "drop"]))
        if where == "field":
            raw[key] = draw(values)
        elif where == "drop":
            raw.pop(key)
        elif where.startswith("label"):
            text = draw(_texts_near_their_bounds())
            raw["labels"] = {text: "v"} if where == "label key" else {"k": text}
        elif "mem_stat" in raw:
            raw["mem_stat"] = ({draw(_texts_near_their_bounds()): 1} if where == "map key"
                               else {"cache": draw(values)})
        return raw

    return mutated()


@settings(max_examples=3000, deadline=None, database=None)
@given(_mutated_messages().map(lambda v: msgpack.packb(v, use_bin_type=True)))
def test_the_c_decoder_accepts_only_what_the_python_checks_accept(payload):
    """msgspec (the fast path) and the checks written in Python take the same payloads: what
    the fast path reads, the Python path reads as the same message; what the Python path
    refuses, the fast path refuses too (and leaves to it, which says why)."""
    fast = wire._decode_checked_in_c(payload)
    slow = _python_path(payload)
    if slow is None:
        assert fast is None
    elif fast is not None:
        assert fast == slow


@pytest.mark.parametrize("repeated", [("seq", -5), ("seq", 7), ("kind", "event"),
                                      ("labels", {"a": 1}), ("host", "other")])
def test_a_key_given_twice_counts_as_its_last_value_on_both_paths(repeated):
    packer = msgpack.Packer()
    fields = [*make_stats().to_dict().items(), repeated]
    payload = packer.pack_map_header(len(fields)) + b"".join(
        packer.pack(key) + packer.pack(value) for key, value in fields)
    fast, slow = wire._decode_checked_in_c(payload), _python_path(payload)
    assert fast == slow or (fast is None and slow is not None)
    if slow is not None:
        assert getattr(slow, repeated[0]) == repeated[1]


def test_bytes_after_the_message_make_it_malformed_on_both_paths():
    payload = wire.encode(make_stats()) + b"\x01"
    assert wire._decode_checked_in_c(payload) is None
    with pytest.raises(wire.MalformedMessage, match="not msgpack"):
        wire.decode(payload)


def test_the_c_decoder_reads_every_valid_message_of_every_kind():
    for message in (_full_sample(), make_stats(), make_event("rename", old_name="x"),
                    make_state(), make_engine(),
                    make_stats(host="h" * 255, labels={"k" * 256: "€" * 1024})):
        assert wire._decode_checked_in_c(wire.encode(message)) == message


# Version 1.1: maps, a 1.0 collector's messages, the new kinds

# The stats fields of 1.1 begin with interval_s.
NEW_IN_1_1 = wire.STATS_FIELDS[[s.name for s in wire.STATS_FIELDS].index("interval_s"):]


def test_per_key_maps_round_trip_exact():
    sample = make_stats(
        net_interfaces={"eth0": {"rx_bytes": 2**63 - 1, "tx_bytes": 1}},
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
    {"net_interfaces": {"eth0": {"rx_bytes": 2**63}}},
    {"net_interfaces": {"x" * 256: {"rx_bytes": 1}}},
    {"mem_stat": {"cache": -1}},
])
def test_maps_are_checked_and_bounded(change):
    with pytest.raises(wire.MalformedMessage, match=r"wrong type|more than|out of range|longer"):
        wire.decode(msgpack.packb(make_stats().to_dict() | change))


def test_a_1_0_collector_s_stats_read_with_the_new_fields_null():
    raw = {name: value for name, value in make_stats().to_dict().items()
           if name not in {spec.name for spec in NEW_IN_1_1}} | {"v": "1.0"}
    sample = wire.decode(msgpack.packb(raw))
    assert isinstance(sample, wire.ContainerStats)
    assert sample.interval_s is None and sample.net_interfaces is None


def test_every_1_1_stats_field_is_nullable():
    assert len(NEW_IN_1_1) > 20 and all(spec.nullable for spec in NEW_IN_1_1)


@pytest.mark.parametrize("kind", ["stats", "event", "state", "engine"])
def test_each_message_class_has_exactly_the_fields_of_its_table(kind):
    # The dataclasses give the fields their Python types (for mypy); the field table gives
    # everything else. A field added to one and not the other fails here.
    cls = {"stats": wire.ContainerStats, "event": wire.ContainerEvent,
           "state": wire.ContainerState, "engine": wire.EngineInfo}[kind]
    specs = {"stats": wire.STATS_FIELDS, "event": wire.EVENT_FIELDS,
             "state": wire.STATE_FIELDS, "engine": wire.ENGINE_FIELDS}[kind]
    assert {f.name for f in dataclasses.fields(cls)} == {spec.name for spec in specs}


# Batches (1.2)

def _batch(**change: object) -> dict:
    items = [wire.encode(make_stats(seq=1)), wire.encode(make_event(seq=2))]
    raw = {"v": "1.2", "kind": "batch", "seq": 1, "host": "test-host", "timestamp": 5,
           "items": items, "containers": [["id", "web", "nginx:1", {"a": "b"}]],
           "item_containers": [0, 0]}
    return raw | change


def test_batch_round_trip_and_its_items_read_as_messages():
    batch = wire.decode_any(msgpack.packb(_batch(), use_bin_type=True))
    assert isinstance(batch, wire.Batch) and (batch.seq, batch.host, batch.timestamp) == (
        1, "test-host", 5)
    assert [wire.decode(item) for item in batch.items] == [make_stats(seq=1),
                                                           make_event(seq=2)]
    assert wire.decode_any(wire.encode_batch(batch)) == batch
    routed = wire.Batch(seq=1, host="h", timestamp=5, items=batch.items)  # as the router sends
    assert wire.decode_any(wire.encode_batch(routed)) == routed
    assert list(msgpack.unpackb(wire.encode_batch(routed))) == [
        spec.name for spec in wire.BATCH_FIELDS]


def test_a_single_message_reader_refuses_a_batch_naming_its_host():
    with pytest.raises(wire.MalformedMessage, match="a batch where one message") as caught:
        wire.decode(msgpack.packb(_batch(), use_bin_type=True))
    assert caught.value.host == "test-host"
    # decode_any reads single messages as decode does
    assert wire.decode_any(wire.encode(make_stats())) == make_stats()


@pytest.mark.parametrize("change, problem", [
    ({"items": []}, "entries"),
    ({"items": [b"x"] * (wire.MAX_BATCH_ITEMS + 1),
      "item_containers": [0] * (wire.MAX_BATCH_ITEMS + 1)}, "entries"),
    ({"items": b"x"}, "wrong type"),
    ({"item_containers": [0]}, "as many"),
    ({"containers": {"a": 1}}, "wrong type"),
    ({"seq": -1}, "out of range"),
    ({"timestamp": None}, "null"),
    ({"v": "2.0"}, "not readable"),
])
def test_a_batch_envelope_outside_the_table_is_malformed(change, problem):
    with pytest.raises(wire.MalformedMessage, match=problem):
        wire.decode_any(msgpack.packb(_batch(**change), use_bin_type=True))


def test_batch_limits_are_exactly_the_documented_ones():
    most = _batch(items=[b"x"] * wire.MAX_BATCH_ITEMS, item_containers=[0] * wire.MAX_BATCH_ITEMS)
    assert len(wire.decode_any(msgpack.packb(most, use_bin_type=True)).items) == 10_000
    # The entries of the lists are left to their readers: a bad item costs only itself.
    odd = wire.decode_any(msgpack.packb(_batch(items=[1, b"x"], item_containers=["a", 9]),
                                        use_bin_type=True))
    assert odd.items == [1, b"x"]


@pytest.mark.parametrize("entry", [
    ["id", "name", "image"], ("id", "name", "image", {}), ["id", 5, "image", {}],
    ["id", "name", "i" * 1025, {}], ["id", "name", "image", {"k": 1}],
    ["id", "name", "image", {f"k{i}": "v" for i in range(257)}], "id",
])
def test_a_container_entry_is_checked_as_the_fields_of_a_message(entry):
    with pytest.raises(wire.MalformedMessage):
        wire.identity_of("h", entry)


def test_a_container_entry_reads_as_an_identity():
    assert wire.identity_of("h", ["id", "web", "nginx", {"a": "b"}]) == wire.ContainerIdentity(
        "h", "id", "web", "nginx", {"a": "b"})


def test_messages_of_this_version_say_1_2_and_older_minors_are_read():
    assert wire.SCHEMA_VERSION == "1.2"
    raw = msgpack.unpackb(wire.encode(make_stats()))
    for version in ("1.0", "1.1", "1.7"):
        assert wire.decode(msgpack.packb(raw | {"v": version})).name == "web"


def test_decode_all_gives_the_messages_of_a_payload_or_says_what_is_wrong():
    assert wire.decode_all(wire.encode(make_stats())) == [make_stats()]
    assert wire.decode_all(msgpack.packb(_batch(), use_bin_type=True)) == [
        make_stats(seq=1), make_event(seq=2)]
    with pytest.raises(wire.MalformedMessage):
        wire.decode_all(msgpack.packb(_batch(items=[b"\xc1", 5]), use_bin_type=True))
