"""The periodic state message of an unchanged container, reused from its last encoding: the
very bytes ``wire.encode`` gives, whatever the seq, time, state and container."""

from __future__ import annotations

import copy

import pytest
from support.recorded_docker import RecordedDockerApi, RecordedDockerClient, load_lifecycle

from statspout import wire
from statspout.bus import PublishCounts
from statspout.collector.discovery import ContainerInfo, DockerEvent, container_info
from statspout.collector.loop import Collector
from statspout.collector.states import EncodedState, state_from_inspect, state_message

LIFECYCLE = load_lifecycle()

# msgpack writes an int in 1, 2, 3, 5 or 9 bytes by its size: one of each, and the extremes.
SEQS = (0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1)
TIMESTAMPS = (0, 1_700_000_000_123_456_789, 2**63 - 1)


def unhealthy_restarting() -> dict:
    attrs = copy.deepcopy(LIFECYCLE["inspect_stopped"])
    attrs["State"].update(Status="restarting", Restarting=True, ExitCode=137, OOMKilled=True,
                          Health={"Status": "unhealthy", "FailingStreak": 70000})
    attrs["RestartCount"] = 300
    return attrs


INSPECTS = {"running": LIFECYCLE["inspect_running"], "stopped": LIFECYCLE["inspect_stopped"],
            "unhealthy restarting": unhealthy_restarting()}
CONTAINERS = {
    "as inspected": None,
    "many labels, long names": ContainerInfo(
        "f" * 64, "n" * 300, "registry.example:5000/" + "i" * 200,
        {f"label.{n}": "v" * n for n in range(40)}, pid=1),
    "no labels, non-ASCII": ContainerInfo("0" * 64, "é-容器", "img", {}, pid=0),
}


@pytest.mark.parametrize("inspect", INSPECTS)
@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize(("host", "interval_s"), [("h", 1.0), ("host-" + "x" * 200, 0.25)])
def test_payload_is_what_wire_encode_gives(inspect, container, host, interval_s):
    attrs = INSPECTS[inspect]
    info = CONTAINERS[container] or container_info(attrs)
    figures = state_from_inspect(attrs)
    encoded = EncodedState(host, info, figures, interval_s=interval_s)
    for seq in SEQS:
        for timestamp in TIMESTAMPS:
            expected = wire.encode(state_message(seq, host, info, figures,
                                                 timestamp=timestamp, interval_s=interval_s))
            assert encoded.payload(seq, timestamp) == expected, (seq, timestamp)
    message = wire.decode(encoded.payload(42, TIMESTAMPS[1]))
    assert isinstance(message, wire.ContainerState)
    assert (message.seq, message.timestamp, message.status) == (42, TIMESTAMPS[1],
                                                                figures.status)


def test_describes_only_the_objects_it_was_made_from():
    attrs = LIFECYCLE["inspect_running"]
    info, figures = container_info(attrs), state_from_inspect(attrs)
    encoded = EncodedState("h", info, figures, interval_s=1.0)
    assert encoded.describes(info, figures)
    # a change of state (a new inspect) makes new objects, even with the same content
    assert not encoded.describes(info, state_from_inspect(attrs))
    assert not encoded.describes(container_info(attrs), figures)


class PayloadPublisher:
    """Stand-in for bus.CollectorPublisher: keeps the payloads as sent."""

    def __init__(self) -> None:
        self.counts = PublishCounts()
        self.payloads: list[bytes] = []

    def publish(self, payload: bytes, messages: int = 1) -> bool:
        self.payloads.append(payload)
        return True

    def states(self) -> list[tuple[bytes, wire.ContainerState]]:
        decoded = [(payload, wire.decode(payload)) for payload in self.payloads]
        return [(p, m) for p, m in decoded if isinstance(m, wire.ContainerState)]


class NoSource:
    name = "none"
    concurrent = False

    def read(self, container: ContainerInfo) -> None:
        raise AssertionError("no sampling here")

    def forget(self, container_id: str) -> None:
        pass


def test_collector_reuses_the_encoding_until_the_state_changes():
    attrs = LIFECYCLE["inspect_running"]
    daemon = RecordedDockerApi(LIFECYCLE["containers"], {attrs["Id"]: attrs})
    publisher = PayloadPublisher()
    loop = Collector(client_factory=lambda: RecordedDockerClient(daemon), source=NoSource(),
                     publisher=publisher, host="host-a", interval=5.0, max_concurrency=1)
    try:
        loop._resync()
        first = loop._state_encodings[attrs["Id"]]
        loop._publish_states()
        loop._publish_states()
        assert loop._state_encodings[attrs["Id"]] is first  # reused, not made again
        daemon.inspects[attrs["Id"]] = LIFECYCLE["inspect_stopped"]
        loop._apply_event(DockerEvent("die", attrs["Id"], "n", "busybox", 1))
        loop._publish_states()
        assert loop._state_encodings[attrs["Id"]] is not first
        loop._apply_event(DockerEvent("destroy", attrs["Id"], "n", "busybox", 2))
        loop._publish_states()
        assert loop._state_encodings == {}  # only the known containers' are kept
    finally:
        loop._pool.shutdown()
    states = publisher.states()
    assert [m.status for _, m in states] == ["running"] * 3 + ["exited"] * 2
    assert len({m.seq for _, m in states}) == 5
    for payload, message in states:  # the bytes wire.encode gives for what they say
        assert payload == wire.encode(message)


def test_reused_state_encodings_travel_in_batches_as_they_are():
    """With batches on, a reused state message is one of the batch's items, byte for byte, under
    its container's entry."""
    attrs = LIFECYCLE["inspect_running"]
    daemon = RecordedDockerApi(LIFECYCLE["containers"], {attrs["Id"]: attrs})
    publisher = PayloadPublisher()
    loop = Collector(client_factory=lambda: RecordedDockerClient(daemon), source=NoSource(),
                     publisher=publisher, host="host-a", interval=5.0, max_concurrency=1,
                     batch_items=100)
    try:
        loop._resync()
        loop._publish_states()
        loop._publish_states()
        loop._batch.flush()
    finally:
        loop._pool.shutdown()
    [payload] = publisher.payloads
    batch = wire.decode_any(payload)
    assert isinstance(batch, wire.Batch)
    states = [wire.decode(item) for item in batch.items]
    # the one made at the listing, then two reused
    assert [m.seq for m in states] == [batch.seq, batch.seq + 1, batch.seq + 2]
    assert all(isinstance(m, wire.ContainerState) and m.id == attrs["Id"] for m in states)
    assert list(batch.items) == [wire.encode(m) for m in states]
    assert batch.containers == [[attrs["Id"], states[0].name, states[0].image, states[0].labels]]
