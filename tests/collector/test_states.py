"""State and engine messages from what Docker and Podman answered (recorded payloads), the
collector's socket detection, and the 1.1 wire kinds: no daemon needed."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import msgpack
import pytest
from support.recorded_docker import load_engine, load_lifecycle

from statspout import wire
from statspout.collector.discovery import ContainerInfo
from statspout.collector.figures import parse_docker_time, reading_from_api
from statspout.collector.main import engine_socket
from statspout.collector.states import (
    engine_from_info,
    engine_message,
    engine_name,
    state_from_inspect,
    state_message,
)

PAYLOADS = Path(__file__).parent / "payloads"
LIFECYCLE = load_lifecycle()
PODMAN = json.loads((PAYLOADS / "podman_4.3_api_1.41.json").read_text())


def test_running_container_state_from_docker_inspect():
    attrs = LIFECYCLE["inspect_running"]
    state = state_from_inspect(attrs)
    assert (state.status, state.health, state.health_failing_streak, state.exit_code) == (
        "running", None, None, None)
    assert state.pid == attrs["State"]["Pid"] > 0
    assert state.started_at == parse_docker_time(attrs["State"]["StartedAt"])
    assert state.finished_at is None  # 0001-01-01: never exited


def test_exited_container_state_keeps_its_exit_code():
    attrs = LIFECYCLE["inspect_stopped"]
    state = state_from_inspect(attrs)
    assert state.status == "exited" and state.pid == 0
    assert state.exit_code == attrs["State"]["ExitCode"]
    assert state.finished_at == parse_docker_time(attrs["State"]["FinishedAt"])


def test_created_never_started_has_no_exit_code_nor_times():
    attrs = copy.deepcopy(LIFECYCLE["inspect_stopped"])
    attrs["State"].update(Status="created", StartedAt="0001-01-01T00:00:00Z",
                          FinishedAt="0001-01-01T00:00:00Z", ExitCode=0)
    state = state_from_inspect(attrs)
    assert (state.status, state.exit_code, state.started_at, state.finished_at) == (
        "created", None, None, None)


def test_health_and_podman_s_empty_health():
    attrs = copy.deepcopy(LIFECYCLE["inspect_running"])
    attrs["State"]["Health"] = {"Status": "unhealthy", "FailingStreak": 4, "Log": []}
    state = state_from_inspect(attrs)
    assert (state.health, state.health_failing_streak) == ("unhealthy", 4)
    attrs["State"]["Health"] = {"Status": "", "FailingStreak": 0, "Log": None}  # Podman's
    assert state_from_inspect(attrs).health is None


def test_podman_s_own_status_names_map_to_docker_s():
    attrs = copy.deepcopy(LIFECYCLE["inspect_stopped"])
    attrs["State"]["Status"] = "stopped"
    assert state_from_inspect(attrs).status == "exited"


def test_state_and_engine_messages_round_trip():
    info = ContainerInfo("c0ffee" * 10 + "abcd", "web", "busybox", {"a": "b"})
    message = state_message(3, "host-a", info, state_from_inspect(LIFECYCLE["inspect_stopped"]),
                            timestamp=5, interval_s=2.0)
    assert wire.decode(wire.encode(message)) == message
    figures = engine_from_info("docker", load_engine()["info"])
    engine = engine_message(4, "host-a", figures, timestamp=6, interval_s=2.0)
    assert wire.decode(wire.encode(engine)) == engine
    raw = msgpack.unpackb(wire.encode(engine))
    assert "id" not in raw and raw["kind"] == "engine"


def test_engine_name_from_version():
    assert engine_name(load_engine()["version"]) == "docker"
    assert engine_name(PODMAN["version"]) == "podman"


def test_podman_stats_payload_reads_nulls_for_what_it_does_not_send():
    figures = reading_from_api(PODMAN["stats"]).figures
    assert figures["mem_stat"] is None and figures["mem_rss"] is None
    assert figures["mem_usage"] == figures["mem_cgroup_usage"] == PODMAN["stats"][
        "memory_stats"]["usage"]
    assert figures["cpu_user_ns"] == PODMAN["stats"]["cpu_stats"]["cpu_usage"][
        "usage_in_usermode"]


def test_socket_detection(tmp_path):
    runtime = tmp_path / "run-user"
    (runtime / "podman").mkdir(parents=True)
    absent = str(tmp_path / "docker.sock")
    rootful = str(tmp_path / "podman.sock")
    env = {"XDG_RUNTIME_DIR": str(runtime)}

    def detect(environ: dict[str, str]) -> str | None:
        return engine_socket(environ, docker_socket=absent, rootful_podman=rootful)

    assert detect(env) is None  # nothing there: docker-py's default and its error
    (tmp_path / "podman.sock").touch()
    assert detect(env) == f"unix://{rootful}"
    (runtime / "podman" / "podman.sock").touch()
    assert detect(env) == f"unix://{runtime}/podman/podman.sock"
    (runtime / "docker.sock").touch()
    assert detect(env) == f"unix://{runtime}/docker.sock"
    assert detect({**env, "DOCKER_HOST": "tcp://127.0.0.1:2375"}) is None  # it is set
    (tmp_path / "docker.sock").touch()
    assert detect(env) is None  # the standard socket exists


@pytest.mark.parametrize(("field", "value"), [
    ("oom_killed", 1), ("oom_killed", None), ("health_failing_streak", True),
])
def test_state_fields_are_checked(field, value):
    info = ContainerInfo("c0ffee", "web", "busybox")
    message = state_message(1, "h", info, state_from_inspect(LIFECYCLE["inspect_running"]),
                            timestamp=1, interval_s=1.0)
    with pytest.raises(wire.MalformedMessage, match=field):
        wire.decode(msgpack.packb(message.to_dict() | {field: value}))
