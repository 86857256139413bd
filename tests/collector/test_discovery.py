"""Discovery's parsing, on what the real daemon sent (payloads/lifecycle_api_1.41.json): no
daemon needed."""

from __future__ import annotations

import pytest
from support.recorded_docker import RecordedDockerApi, RecordedDockerClient, load_lifecycle

from statspout.collector.discovery import (
    ContainerInfo,
    DockerEvent,
    container_info,
    inspect,
    is_running,
    list_containers,
    parse_event,
)

LIFECYCLE = load_lifecycle()
ID = LIFECYCLE["inspect_running"]["Id"]
NAME = LIFECYCLE["inspect_running"]["Name"].lstrip("/")
LABELS = LIFECYCLE["inspect_running"]["Config"]["Labels"]


def recorded_event(action: str) -> dict:
    return next(raw for raw in LIFECYCLE["events"] if raw["Action"] == action)


def test_the_recording_holds_a_whole_lifecycle():
    actions = [raw["Action"] for raw in LIFECYCLE["events"]]
    assert actions == ["start", "rename", "pause", "unpause", "die", "destroy"]
    assert LABELS["app"] == "web"


def test_start_event():
    raw = recorded_event("start")
    assert parse_event(raw) == DockerEvent(
        action="start", id=ID, name=NAME, image="statspout-test/busybox:1",
        timestamp=raw["timeNano"], old_name=None,
    )


def test_rename_event_carries_the_old_name_without_its_slash():
    event = parse_event(recorded_event("rename"))
    assert event is not None
    assert (event.name, event.old_name) == (f"{NAME}-renamed", NAME)


@pytest.mark.parametrize("action", ["pause", "unpause", "die", "destroy"])
def test_every_recorded_action_is_followed(action):
    event = parse_event(recorded_event(action))
    assert event is not None and event.action == action and event.id == ID


def test_time_in_seconds_only_is_taken_to_nanoseconds():
    raw = dict(recorded_event("die"))
    del raw["timeNano"]
    event = parse_event(raw)
    assert event is not None and event.timestamp == raw["time"] * 1_000_000_000


@pytest.mark.parametrize("change", [{"Type": "network"}, {"Action": "exec_create: sh"},
                                    {"Action": "stop"}])
def test_events_discovery_does_not_follow_are_none(change):
    assert parse_event({**recorded_event("start"), **change}) is None


def test_container_info_from_inspect():
    info = container_info(LIFECYCLE["inspect_running"])
    assert info == ContainerInfo(ID, NAME, "statspout-test/busybox:1", LABELS,
                                 pid=LIFECYCLE["inspect_running"]["State"]["Pid"])
    assert info.pid > 0


def test_container_info_of_a_stopped_container_has_no_pid():
    assert container_info(LIFECYCLE["inspect_stopped"]).pid == 0


def test_list_containers_from_the_listing_with_their_status():
    api = RecordedDockerApi(LIFECYCLE["containers"], {})
    assert list_containers(RecordedDockerClient(api)) == {
        ID: (ContainerInfo(ID, NAME, "statspout-test/busybox:1", LABELS), "running")
    }
    assert api.requests == ["containers all"]  # stopped ones too, for their state messages


def test_inspect_is_none_for_gone_containers_and_tells_running():
    api = RecordedDockerApi([], {ID: LIFECYCLE["inspect_stopped"]})
    client = RecordedDockerClient(api)
    stopped = inspect(client, ID)
    assert stopped is not None and not is_running(stopped)
    assert inspect(client, "f" * 64) is None
    api.inspects[ID] = LIFECYCLE["inspect_running"]
    running = inspect(client, ID)
    assert running is not None and is_running(running)


def test_health_status_events_are_followed_without_their_suffix():
    raw = {**recorded_event("start"), "Action": "health_status: unhealthy"}
    event = parse_event(raw)
    assert event is not None and event.action == "health_status"
