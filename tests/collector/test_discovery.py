"""Discovery's parsing, on what the real daemon sent (payloads/lifecycle_api_1.41.json): no
daemon needed."""

from __future__ import annotations

import pytest
from support.recorded_docker import RecordedDockerApi, RecordedDockerClient, load_lifecycle

from statspout.collector.discovery import (
    ContainerInfo,
    DockerEvent,
    container_info,
    inspect_running,
    list_running,
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


def test_list_running_from_the_listing():
    client = RecordedDockerClient(RecordedDockerApi(LIFECYCLE["containers"], {}))
    assert list_running(client) == {
        ID: ContainerInfo(ID, NAME, "statspout-test/busybox:1", LABELS)
    }


def test_inspect_running_is_none_for_stopped_and_gone_containers():
    api = RecordedDockerApi([], {ID: LIFECYCLE["inspect_stopped"]})
    client = RecordedDockerClient(api)
    assert inspect_running(client, ID) is None
    assert inspect_running(client, "f" * 64) is None
    api.inspects[ID] = LIFECYCLE["inspect_running"]
    info = inspect_running(client, ID)
    assert info is not None and info.labels == LABELS
