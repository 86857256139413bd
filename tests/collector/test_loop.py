"""The collector loop's container table and the events it publishes, driven by what the real
daemon sent (tests/collector/payloads/lifecycle_api_1.41.json) through a stand-in Docker client:
no daemon needed."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from support.recorded_docker import (
    RecordedDockerApi,
    RecordedDockerClient,
    load_engine,
    load_lifecycle,
)

from statspout import wire
from statspout.bus import PublishCounts
from statspout.collector.discovery import ContainerInfo, DockerEvent, parse_event
from statspout.collector.figures import Reading
from statspout.collector.loop import Collector

LIFECYCLE = load_lifecycle()
ID = LIFECYCLE["inspect_running"]["Id"]
NAME = LIFECYCLE["inspect_running"]["Name"].lstrip("/")
LABELS = LIFECYCLE["inspect_running"]["Config"]["Labels"]
OTHER_ID = "9" * 64


@dataclass
class RecordingPublisher:
    """Stand-in for bus.CollectorPublisher: keeps the decoded messages instead of sending."""

    counts: PublishCounts = field(default_factory=PublishCounts)
    sent: list[wire.Message] = field(default_factory=list)

    def publish(self, payload: bytes) -> bool:
        self.sent.append(wire.decode(payload))
        self.counts.sent += 1
        return True

    def events(self) -> list[tuple[str, str, str | None]]:
        return [(m.action, m.name, m.old_name) for m in self.sent
                if isinstance(m, wire.ContainerEvent)]


@dataclass
class ForgettingSource:
    """Stand-in reading source: reads nothing (no cycle runs here), remembers what it forgot."""

    name: str = "stand-in"
    concurrent: bool = False
    forgotten: list[str] = field(default_factory=list)

    def read(self, container: ContainerInfo) -> Reading | None:
        raise AssertionError("no sampling in these tests")

    def forget(self, container_id: str) -> None:
        self.forgotten.append(container_id)


@pytest.fixture
def daemon() -> RecordedDockerApi:
    """What the daemon says now: the recorded container running."""
    return RecordedDockerApi(LIFECYCLE["containers"], {ID: LIFECYCLE["inspect_running"]})


def make_collector(daemon: RecordedDockerApi, states: str):
    publisher = RecordingPublisher()
    source = ForgettingSource()
    made = Collector(client_factory=lambda: RecordedDockerClient(daemon), source=source,
                     publisher=publisher, host="host-a", interval=5.0, max_concurrency=1,
                     states=states)
    return made, publisher, source


@pytest.fixture
def collector(daemon):
    """Events only (--states none): the tests of the container table and its events."""
    made = make_collector(daemon, "none")
    yield made
    made[0]._pool.shutdown()


@pytest.fixture
def stateful(daemon):
    """With state messages for every container (--states all, the default)."""
    made = make_collector(daemon, "all")
    yield made
    made[0]._pool.shutdown()


def recorded_events() -> list[DockerEvent]:
    events = [parse_event(raw) for raw in LIFECYCLE["events"]]
    assert None not in events
    return events  # type: ignore[return-value]


def test_first_listing_publishes_nothing(collector):
    loop, publisher, _ = collector
    loop._resync()
    assert publisher.sent == []
    assert loop.counts.events == 0
    loop.report()  # the report line counts the listed container; must not raise


def test_recorded_lifecycle_publishes_every_event_with_the_labels(collector, daemon):
    loop, publisher, source = collector
    daemon.listing = []  # the container starts after the first listing
    loop._resync()
    for event in recorded_events():
        if event.action == "die":
            daemon.inspects[ID] = LIFECYCLE["inspect_stopped"]
        loop._apply_event(event)
    renamed = f"{NAME}-renamed"
    assert publisher.events() == [
        ("start", NAME, None),
        ("rename", renamed, NAME),
        ("pause", renamed, None),
        ("unpause", renamed, None),
        ("stop", renamed, None),
        ("destroy", renamed, None),
    ]
    # Every event carries the labels from the inspect, "destroy" too (from the stopped table),
    # the daemon's time, and the numbers run without a gap.
    assert all(m.labels == LABELS and m.id == ID and m.host == "host-a" for m in publisher.sent)
    assert [m.timestamp for m in publisher.sent] == [raw["timeNano"]
                                                     for raw in LIFECYCLE["events"]]
    assert [m.seq for m in publisher.sent] == [1, 2, 3, 4, 5, 6]
    assert source.forgotten == [ID, ID]  # on die, and on destroy
    assert loop.counts.events == 6


def test_start_of_a_container_that_already_died_publishes_nothing(collector, daemon):
    loop, publisher, _ = collector
    loop._resync()
    daemon.inspects[ID] = LIFECYCLE["inspect_stopped"]
    start = recorded_events()[0]
    loop._apply_event(DockerEvent("die", ID, NAME, start.image, start.timestamp))
    loop._apply_event(start)
    assert publisher.events() == [("stop", NAME, None)]


def test_destroy_of_a_container_never_seen_carries_the_event_names(collector):
    loop, publisher, _ = collector
    loop._resync()
    destroy = recorded_events()[-1]
    loop._apply_event(DockerEvent("destroy", OTHER_ID, "stranger", "busybox", destroy.timestamp))
    (message,) = publisher.sent
    assert isinstance(message, wire.ContainerEvent)
    assert (message.action, message.id, message.name, message.labels) == (
        "destroy", OTHER_ID, "stranger", {})


def test_events_of_unknown_containers_other_than_destroy_are_ignored(collector):
    loop, publisher, _ = collector
    loop._resync()
    for event in recorded_events()[1:5]:  # rename, pause, unpause, die
        loop._apply_event(DockerEvent(event.action, OTHER_ID, "x", "busybox", event.timestamp,
                                      event.old_name))
    assert publisher.sent == []


def test_resync_after_a_reconnect_publishes_what_changed_meanwhile(collector, daemon):
    """The daemon restarted: the recorded container is gone, another one runs."""
    loop, publisher, source = collector
    loop._resync()
    first_client = loop._client
    other = dict(LIFECYCLE["containers"][0], Id=OTHER_ID, Names=["/other"], Labels={})
    daemon.listing = [other]
    loop._resync()
    assert first_client.closed  # a new connection for a daemon that may have restarted
    assert sorted(publisher.events()) == [("start", "other", None), ("stop", NAME, None)]
    assert source.forgotten == [ID]
    # The stopped container's destroy still carries its labels.
    loop._apply_event(recorded_events()[-1])
    assert publisher.sent[-1].labels == LABELS


# State and engine messages


def states_of(publisher: RecordingPublisher) -> list[wire.ContainerState]:
    return [m for m in publisher.sent if isinstance(m, wire.ContainerState)]


def test_resync_inspects_each_container_once_and_publishes_its_state(stateful, daemon):
    loop, publisher, _ = stateful
    stopped = dict(LIFECYCLE["containers"][0], Id=OTHER_ID, Names=["/other"], State="exited")
    daemon.listing = [*LIFECYCLE["containers"], stopped]
    daemon.inspects[OTHER_ID] = dict(LIFECYCLE["inspect_stopped"], Id=OTHER_ID, Name="/other")
    loop._resync()
    assert sorted((s.name, s.status) for s in states_of(publisher)) == [
        ("other", "exited"), (NAME, "running")]
    inspects = [r for r in daemon.requests if r.startswith("inspect")]
    assert len(inspects) == 2
    # Every interval: a state per container, running or not, with no inspect at all.
    publisher.sent.clear()
    loop._publish_states()
    loop._publish_states()
    assert len(states_of(publisher)) == 4
    assert [r for r in daemon.requests if r.startswith("inspect")] == inspects
    running = next(s for s in states_of(publisher) if s.name == NAME)
    state = LIFECYCLE["inspect_running"]["State"]
    assert (running.pid, running.exit_code, running.health, running.interval_s) == (
        state["Pid"], None, None, 5.0)
    exited = next(s for s in states_of(publisher) if s.name == "other")
    assert exited.exit_code == LIFECYCLE["inspect_stopped"]["State"]["ExitCode"]
    assert exited.finished_at is not None and exited.pid == 0


def test_states_running_leaves_out_the_stopped_ones_every_interval(daemon):
    loop, publisher, _ = make_collector(daemon, "running")
    try:
        loop._resync()
        loop._apply_event(DockerEvent("die", ID, NAME, "busybox", 1))  # a change: published
        daemon.inspects[ID] = LIFECYCLE["inspect_stopped"]
        loop._apply_event(DockerEvent("die", ID, NAME, "busybox", 2))
        assert states_of(publisher)[-1].status == "exited"
        publisher.sent.clear()
        loop._publish_states()
        assert states_of(publisher) == []
    finally:
        loop._pool.shutdown()


def test_each_event_inspects_once_and_oom_events_are_counted(stateful, daemon):
    loop, _, _ = stateful
    loop._resync()
    before = len(daemon.requests)
    loop._apply_event(DockerEvent("oom", ID, NAME, "busybox", 1))
    loop._apply_event(DockerEvent("oom", ID, NAME, "busybox", 2))
    assert daemon.requests[before:] == [f"inspect {ID[:12]}"] * 2
    assert loop._oom_events[ID] == 2
    loop._apply_event(recorded_events()[-1])  # destroy: no inspect, the state is forgotten
    assert daemon.requests[before + 2:] == []
    assert ID not in loop._states and ID not in loop._oom_events


def test_engine_message_from_info_with_the_collector_s_own_counts(stateful, daemon):
    loop, publisher, _ = stateful
    loop._resync()
    loop._publish_engine()  # no /info answer yet: none this interval, and /info is asked
    assert not [m for m in publisher.sent if isinstance(m, wire.EngineInfo)]
    loop._engine_read.result(timeout=5)
    loop._handle(loop._inbox.get(timeout=5))
    loop._publish_engine()
    loop._publish_engine()  # the next interval: from the same answer, /info not asked again
    assert daemon.requests.count("info") == 1
    engines = [m for m in publisher.sent if isinstance(m, wire.EngineInfo)]
    assert len(engines) == 2
    info = load_engine()["info"]
    assert (engines[-1].engine, engines[-1].server_version, engines[-1].images,
            engines[-1].cpus, engines[-1].memory_total) == (
        "docker", info["ServerVersion"], info["Images"], info["NCPU"], info["MemTotal"])
    # the counts: the collector's table (the one recorded container, running)
    assert (engines[-1].containers_running, engines[-1].containers_paused,
            engines[-1].containers_stopped) == (1, 0, 0)


def test_engine_counts_from_info_every_interval_under_states_none(collector, daemon):
    loop, publisher, _ = collector
    loop._resync()
    for _ in range(2):
        loop._publish_engine()
        loop._engine_read.result(timeout=5)
        loop._handle(loop._inbox.get(timeout=5))
    loop._publish_engine()
    loop._engine_read.result(timeout=5)
    assert daemon.requests.count("info") == 3
    (engine,) = [m for m in publisher.sent if isinstance(m, wire.EngineInfo)][-1:]
    assert engine.containers_running == load_engine()["info"]["ContainersRunning"]
