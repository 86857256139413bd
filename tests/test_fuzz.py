"""Fuzzing the real router and a real sink process with random and mutated messages.

Hypothesis makes batches of inputs: random bytes, random msgpack values, valid samples and
events with one field replaced by any msgpack value, wire batches of such items (with bad
container entries and indexes, nested batches, too many items, envelope fields replaced), and
random frame counts. Every input goes
to the router's input (a real ``statspout-router``) and, framed as the router frames it, to a
real ``statspout-sink stdout`` fed directly; a second sink behind the router takes what the
router forwards. The test asserts that both processes stay up, that every input is either
passed on or counted as malformed (the counts add up exactly), and that valid messages still
flow afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.feed import RouterFeed
from support.ports import free_port
from support.processes import Process, program
from support.samples import make_event, make_stats
from support.waiting import wait_for

from statspout import bus, wire
from statspout.router.route_table import RouteTable
from statspout.sinks.recent import MessageKey, message_key

SEND_TIMEOUT_MS = 10_000
EXAMPLES = 2000  # batches of 5 to 40 inputs; every input goes to the router and to the sink


@dataclasses.dataclass
class Expected:
    """What the processes must have counted once everything sent so far has arrived."""

    to_router: int = 0
    router_malformed: int = 0
    router_forwarded: int = 0  # route "all"'s numbers: one a message, one a batch's item
    router_messages: int = 0  # router messages on route "all" (a batch of its items is one)
    to_sink: int = 0
    sink_malformed: int = 0
    sink_taken: int = 0  # samples + events
    # Valid messages the same again behind the router (sinks/recent.py; the fuzzed sink's feed
    # has no router run id, so it keeps them): dropped as repeats, in ``duplicates``.
    behind_repeats: int = 0
    # Batch items the router forwards unread (it routes them by their container entry) that
    # are not valid messages: the sink behind it counts them as malformed.
    behind_malformed: int = 0
    behind_written: int = 0  # messages the sink behind writes out


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.listen = f"tcp://127.0.0.1:{free_port()}"
        self.publish = f"tcp://127.0.0.1:{free_port()}"
        self.control = f"ipc://{tmp}/router.ctl"
        # Its replay endpoint named too: the default (the publish port + 1) may be a port
        # another test's process holds.
        self.router = Process([program("statspout-router"), "--listen", self.listen,
                               "--publish", self.publish, "--control", self.control,
                               "--replay", f"tcp://127.0.0.1:{free_port()}",
                               "--report-interval", "1"])
        self.behind = Process([program("statspout-sink"), "stdout", "--stdout.format", "json",
                               "--connect", self.publish, "--report-interval", "1"])
        self.feed = RouterFeed()
        # A sink that died must fail the test, not block the feed's sends for good.
        self.feed.socket.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        self.fuzzed = Process([program("statspout-sink"), "stdout", "--stdout.format", "json",
                               "--connect", self.feed.endpoint, "--report-interval", "1"])
        self.feed.wait_for_subscriber()
        # The collectors' side: an XPUB like the collector's, never dropping (it blocks).
        self.context = zmq.Context()
        self.input = self.context.socket(zmq.XPUB)
        self.input.setsockopt(zmq.XPUB_NODROP, 1)
        self.input.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        self.input.connect(self.listen)
        assert self.input.poll(20_000), f"the router never subscribed: {self.router.log()}"
        self.input.recv()
        self.expected = Expected()
        self.routes = RouteTable()
        self.behind_keys: set[MessageKey] = set()
        self.probes_unseen = self._probe_until_behind_sees_one()

    def _probe_until_behind_sees_one(self) -> int:
        """The router's PUB drops what it sends before the sink behind it has subscribed:
        probe until one arrives, then send a marker, after which every probe that will arrive
        has. Returns how many probes the sink behind never saw."""
        def through() -> bool:  # each probe another message: none is a repeat
            self.send_to_router([wire.encode(make_stats(self.expected.to_router + 1,
                                                        name="probe"))])
            return any(m["name"] == "probe" for m in self.behind.json_lines())
        wait_for(through, 20, "the sink behind the router to see a probe")
        self.send_to_router([wire.encode(make_stats(name="marker"))])
        wait_for(lambda: any(m["name"] == "marker" for m in self.behind.json_lines()), 20,
                 "the marker after the probes")
        seen = sum(m["name"] in ("probe", "marker") for m in self.behind.json_lines())
        return self.expected.router_forwarded - seen

    def send_to_router(self, frames: list[bytes]) -> None:
        self.input.send_multipart(frames)
        self.expected.to_router += 1
        content = decoded_any(frames[0]) if len(frames) == 1 else None
        if content is None:
            self.expected.router_malformed += 1
        elif isinstance(content, wire.Batch):
            self._route_batch(content)
        elif "all" in self.routes.routes_for(content):
            self.expected.router_forwarded += 1
            self.expected.router_messages += 1
            self._reaches_behind(frames[0])

    def _route_batch(self, batch: wire.Batch) -> None:
        """What the router does with a batch (docs/wire-schema.md), item by item."""
        expected = self.expected
        if batch.containers is None or batch.item_containers is None:
            expected.router_malformed += len(batch.items)
            return
        routes_of: list[list[str] | None] = []
        for entry in batch.containers:
            try:
                routes_of.append(self.routes.routes_for(wire.identity_of(batch.host, entry)))
            except wire.MalformedMessage:
                routes_of.append(None)
        routes_of.append(self.routes.engine_routes(batch.host))  # index -1
        to_all = 0
        for item, index in zip(batch.items, batch.item_containers, strict=True):
            if type(item) is bytes and type(index) is int and -1 <= index < len(routes_of) - 1 \
                    and (routes := routes_of[index]) is not None:
                if "all" in routes:
                    to_all += 1
                    self._reaches_behind(item)
            else:
                expected.router_malformed += 1
        if to_all:
            expected.router_forwarded += to_all
            expected.router_messages += 1

    def _reaches_behind(self, payload: bytes) -> None:
        message = decoded(payload)
        if message is None:
            self.expected.behind_malformed += 1
        elif _seen_before(self.behind_keys, message, payload):
            self.expected.behind_repeats += 1
        else:
            self.expected.behind_written += 1

    def send_to_sink(self, frames: list[bytes]) -> None:
        """``frames`` after the topic; as [number, payload] (an 8-byte first frame), the
        number is replaced by the next one in sequence."""
        self.expected.to_sink += 1
        readable = len(frames) == 2 and len(frames[0]) == 8
        content = decoded_any(frames[1]) if readable else None
        if readable:
            self.feed.sequence += 1
            frames = [bus.pack_sequence(self.feed.sequence), frames[1]]
            if isinstance(content, wire.Batch):  # one number per item
                self.feed.sequence += len(content.items) - 1
        self.feed.send_frames(self.feed.topic, *frames)
        if content is None:
            self.expected.sink_malformed += 1
            return
        for payload in content.items if isinstance(content, wire.Batch) else [frames[1]]:
            if decoded(payload) is not None:
                self.expected.sink_taken += 1
            else:
                self.expected.sink_malformed += 1

    def router_status(self) -> dict:
        result = subprocess.run([program("statspout-router"), "--status", "--json",
                                 "--control", self.control],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def close(self) -> None:
        self.input.close(0)
        self.context.term()
        for process in (self.fuzzed, self.behind, self.router):
            process.stop()
        self.feed.close()


def decoded(payload: object) -> wire.Message | None:
    try:
        return wire.decode(payload)  # type: ignore[arg-type] - a batch's item may be anything
    except wire.MalformedMessage:
        return None


def decoded_any(payload: bytes) -> wire.Message | wire.Batch | None:
    try:
        return wire.decode_any(payload)
    except wire.MalformedMessage:
        return None


def _seen_before(keys: set[MessageKey], message: wire.Message, payload: bytes) -> bool:
    key = message_key(message, payload)
    if key in keys:
        return True
    keys.add(key)
    return False


def sink_report(process: Process) -> dict[str, int]:
    """The figures of the sink's last periodic report line."""
    lines = [line for line in process.stderr if " received=" in line]
    if not lines:
        return {}
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1])}


@pytest.fixture(scope="module")
def rig(tmp_path_factory) -> Iterator[Rig]:
    rig = Rig(tmp_path_factory.mktemp("fuzz"))
    yield rig
    rig.close()


def msgpack_values() -> st.SearchStrategy:
    scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
               | st.text(max_size=12) | st.binary(max_size=12))
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=8,
    )


VALID = [make_stats().to_dict(), make_stats(cpu_percent=None, labels={}).to_dict(),
         make_event("rename", old_name="before").to_dict()]


def mutated_valid() -> st.SearchStrategy:
    """A valid message with one field replaced (or removed, or added) by any value."""
    def mutate(base: dict, key: str, value: object, remove: bool) -> dict:
        changed = dict(base)
        if remove:
            changed.pop(key, None)
        else:
            changed[key] = value
        return changed
    keys = st.sampled_from(sorted({k for m in VALID for k in m}) + ["extra"])
    return st.builds(mutate, st.sampled_from(VALID), keys, msgpack_values(), st.booleans())


def packed(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return strategy.map(lambda value: msgpack.packb(value, use_bin_type=True))


SINGLE_PAYLOADS = st.one_of(
    st.binary(max_size=64),
    packed(msgpack_values()),
    packed(mutated_valid()),
    packed(st.sampled_from(VALID)),
)
ENTRIES = [["c0ffee", "web", "nginx:1", {"com.docker.compose.project": "shop"}],
           ["c1", "ignored", "busybox", {"statspout.ignore": "true"}]]
NESTED = wire.encode_batch(wire.Batch(seq=1, host="test-host", timestamp=1,
                                      items=[msgpack.packb(VALID[0])]))


@st.composite
def batches(draw: st.DrawFn) -> dict:
    """A batch of a few items (any payload, a nested batch, any value), container entries
    (valid ones, or any value), indexes (mostly in range), and now and then a field of the
    envelope replaced or removed, or more items than a batch may carry."""
    items = draw(st.lists(st.one_of(SINGLE_PAYLOADS, st.just(NESTED), msgpack_values()),
                          max_size=6))
    entries = draw(st.lists(st.sampled_from(ENTRIES) | msgpack_values(), max_size=3))
    indexes = [draw(st.integers(-2, len(entries)) | msgpack_values()) for _ in items]
    raw = {"v": "1.2", "kind": "batch", "seq": draw(st.integers(0, 2**63 - 1)),
           "host": draw(st.sampled_from(["test-host", "h2"])),
           "timestamp": draw(st.integers(0, 2**63 - 1)), "items": items,
           "containers": entries, "item_containers": indexes}
    change = draw(st.integers(0, 39))  # the largest batches are slow to count: now and then
    if change == 0:
        raw[draw(st.sampled_from([*raw, "extra"]))] = draw(msgpack_values())
    elif change == 1:
        raw.pop(draw(st.sampled_from(sorted(raw))))
    elif change == 2:
        count = wire.MAX_BATCH_ITEMS + draw(st.integers(0, 1))
        raw.update(items=[b"\x80"] * count, item_containers=[0] * count)
    return raw


PAYLOADS = st.one_of(SINGLE_PAYLOADS, packed(batches()))
# Mostly one frame (as a collector sends), sometimes any number.
ROUTER_INPUTS = st.one_of(PAYLOADS.map(lambda p: [p]),
                          st.lists(st.binary(max_size=16), min_size=2, max_size=5))
# After the topic: a number and a payload (the number put in by the rig), or anything else.
SINK_INPUTS = st.one_of(PAYLOADS.map(lambda p: [bytes(8), p]),
                        st.lists(st.binary(max_size=16), min_size=0, max_size=4))


def test_router_and_sink_survive_fuzzing_and_the_counts_add_up(rig: Rig) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(ROUTER_INPUTS, SINK_INPUTS), min_size=5, max_size=40))
    def fuzz(batch: list[tuple[list[bytes], list[bytes]]]) -> None:
        for router_frames, sink_frames in batch:
            rig.send_to_router(router_frames)
            rig.send_to_sink(sink_frames)

    fuzz()
    expected = rig.expected
    cases = expected.to_router + expected.to_sink
    print(f"fuzz: {cases} inputs ({expected.to_router} to the router, {expected.to_sink} to "
          f"the sink); malformed {expected.router_malformed} at the router, "
          f"{expected.sink_malformed} at the sink")
    assert cases >= 20_000
    assert expected.router_malformed > 0 and expected.sink_malformed > 0
    assert expected.router_forwarded > 100 and expected.sink_taken > 100
    assert expected.router_forwarded > expected.router_messages and expected.behind_malformed

    # Valid messages still flow afterwards, through the router and straight to the sink.
    rig.send_to_router([wire.encode(make_stats(name="after-fuzz"))])
    rig.send_to_sink([bytes(8), wire.encode(make_stats(name="after-fuzz"))])
    wait_for(lambda: any(m["name"] == "after-fuzz" for m in rig.behind.json_lines()), 20,
             "a valid message through the router after the fuzzing")
    wait_for(lambda: any(m["name"] == "after-fuzz" for m in rig.fuzzed.json_lines()), 20,
             "a valid message at the fuzzed sink after the fuzzing")

    status = wait_for(lambda: (s := rig.router_status())["malformed"]
                      == expected.router_malformed and s, 20, "the router's malformed count")
    assert status["routes"]["all"]["out"] == expected.router_forwarded
    assert status["internal_errors"] == 0
    fuzzed = wait_for(lambda: (r := sink_report(rig.fuzzed)).get("received")
                      == expected.to_sink and r, 20, "the fuzzed sink's report")
    assert fuzzed["malformed"] == expected.sink_malformed
    assert fuzzed["samples"] + fuzzed["events"] == expected.sink_taken
    assert (fuzzed["gaps"], fuzzed["duplicates"], fuzzed["sink_errors"]) == (0, 0, 0)
    reaching = expected.router_messages - rig.probes_unseen
    behind = wait_for(lambda: (r := sink_report(rig.behind)).get("received") == reaching and r,
                      20, "the sink behind the router")
    assert (behind["malformed"], behind["gaps"], behind["sink_errors"]) == (
        expected.behind_malformed, 0, 0)
    assert behind["duplicates"] == expected.behind_repeats
    wait_for(lambda: len(rig.behind.json_lines()) == expected.behind_written - rig.probes_unseen,
             20, "every line written")
    for process in (rig.router, rig.behind, rig.fuzzed):
        assert process.popen.poll() is None, process.log()[-2000:]
