"""The InfluxDB sink's data model on recorded payloads (tests/collector/payloads): each field
against the raw figure Telegraf's docker input would have written from the same payload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support.recorded_docker import load_engine, load_lifecycle
from support.samples import make_engine, make_state, make_stats

from statspout.collector.discovery import ContainerInfo
from statspout.collector.figures import parse_docker_time, reading_from_api, stats_message
from statspout.collector.states import (
    engine_from_info,
    engine_message,
    state_from_inspect,
    state_message,
)
from statspout.sinks.influxdb import (
    MEM_STAT_FIELDS,
    PointData,
    line_protocol,
    message_points,
    telegraf_mem_usage,
)
from statspout.wire import ContainerStats

PAYLOADS = Path(__file__).parents[1] / "collector" / "payloads"
CONTAINER = ContainerInfo("c0ffee" * 10 + "abcd", "web", "busybox", {})


def sample_of(payload_name: str) -> tuple[dict[str, Any], ContainerStats]:
    payload = json.loads((PAYLOADS / payload_name).read_text())
    reading = reading_from_api(payload)
    assert reading is not None
    return payload, stats_message(1, "h", CONTAINER, reading, None, interval_s=1.0,
                                  oom_events=0)


def by_series(points: list[PointData]) -> dict[tuple[str, tuple[tuple[str, str], ...]], dict]:
    """{(measurement, own tags): fields without the left-out (None) ones}."""
    series = {}
    for measurement, own_tags, fields in points:
        assert (measurement, own_tags) not in series
        series[(measurement, own_tags)] = {k: v for k, v in fields.items() if v is not None}
    return series


def test_cgroup_v1_payload_gives_telegrafs_fields() -> None:
    payload, sample = sample_of("cgroup_v1_api_1.41.json")
    points = by_series(message_points(sample))
    cpu = points[("docker_container_cpu", (("cpu", "cpu-total"),))]
    usage = payload["cpu_stats"]["cpu_usage"]
    throttling = payload["cpu_stats"]["throttling_data"]
    assert (cpu["usage_total"], cpu["usage_in_usermode"], cpu["usage_in_kernelmode"]) == (
        usage["total_usage"], usage["usage_in_usermode"], usage["usage_in_kernelmode"])
    assert (cpu["throttling_periods"], cpu["throttling_throttled_periods"],
            cpu["throttling_throttled_time"]) == (
        throttling["periods"], throttling["throttled_periods"], throttling["throttled_time"])

    mem = points[("docker_container_mem", ())]
    memory = payload["memory_stats"]
    stats = memory["stats"]
    # Telegraf's CalculateMemUsageUnixNoCache on cgroup v1: usage − memory.stat "cache".
    assert mem["usage"] == memory["usage"] - stats["cache"]
    assert mem["usage_percent"] == mem["usage"] / memory["limit"] * 100
    assert (mem["limit"], mem["max_usage"]) == (memory["limit"], memory["max_usage"])
    copied = {key: stats[key] for key in stats if key in MEM_STAT_FIELDS}
    assert {key: mem[key] for key in copied} == copied
    assert "dirty" not in mem and "hierarchical_memsw_limit" not in mem  # Telegraf skips them
    assert "fail_count" not in mem  # 0 in the payload: Telegraf leaves it out

    assert points[("docker_container_net", (("network", "eth0"),))] == {
        **payload["networks"]["eth0"], "container_id": sample.id}
    assert points[("docker_container_net", (("network", "total"),))] == {
        **payload["networks"]["eth0"], "container_id": sample.id}
    # No block I/O recorded: only the total, as Telegraf.
    assert [key for key in points if key[0] == "docker_container_blkio"] == [
        ("docker_container_blkio", (("device", "total"),))]


def test_cgroup_v2_payload_gives_telegrafs_fields() -> None:
    payload, sample = sample_of("cgroup_v2_shape.json")
    points = by_series(message_points(sample))
    mem = points[("docker_container_mem", ())]
    memory = payload["memory_stats"]
    # No "cache" on v2: usage − inactive_file.
    assert mem["usage"] == memory["usage"] - memory["stats"]["inactive_file"]
    assert "anon" not in mem and "file" not in mem  # not in Telegraf's list
    assert mem["active_file"] == memory["stats"]["active_file"]
    assert "max_usage" not in mem  # the v2 API payload has none: not a made-up 0

    for name, figures in payload["networks"].items():
        assert points[("docker_container_net", (("network", name),))] == {
            **figures, "container_id": sample.id}
    total = points[("docker_container_net", (("network", "total"),))]
    assert total["rx_bytes"] == sum(f["rx_bytes"] for f in payload["networks"].values())

    devices: dict[str, dict[str, int]] = {}
    for entry in payload["blkio_stats"]["io_service_bytes_recursive"]:
        devices.setdefault(f"{entry['major']}:{entry['minor']}", {})[
            "io_service_bytes_recursive_" + entry["op"]] = entry["value"]
    for device, fields in devices.items():
        assert points[("docker_container_blkio", (("device", device),))] == {
            **fields, "container_id": sample.id}
    total = points[("docker_container_blkio", (("device", "total"),))]
    assert total["io_service_bytes_recursive_read"] == sum(
        f["io_service_bytes_recursive_read"] for f in devices.values())


def test_telegraf_memory_usage_formula_in_its_order() -> None:
    assert telegraf_mem_usage(100, {"cache": 30, "total_inactive_file": 20}) == 70
    assert telegraf_mem_usage(100, {"cache": 300, "total_inactive_file": 20}) == 80
    assert telegraf_mem_usage(100, {"inactive_file": 40}) == 60
    assert telegraf_mem_usage(100, {"inactive_file": 400}) == 100
    assert telegraf_mem_usage(100, {}) == 100


def test_a_1_0_sample_is_written_as_before() -> None:
    """Figures a 1.0 collector does not send are left out, never written as 0."""
    sample = make_stats(mem_usage=500, mem_percent=5.0)
    body = line_protocol([sample]).decode()
    points = by_series(message_points(sample))
    assert points[("docker_container_mem", ())] == {
        "usage": 500, "usage_percent": 5.0, "limit": sample.mem_limit,
        "container_id": sample.id}
    assert [key for key in points if key[0] == "docker_container_net"] == [
        ("docker_container_net", (("network", "total"),))]
    for field in ("usage_in_usermode", "throttling", "max_usage", "fail_count", "cache"):
        assert field not in body


def test_no_network_interface_means_no_network_point_as_telegraf() -> None:
    sample = make_stats(net_interfaces={}, mem_cgroup_usage=10, mem_failcnt=4)
    points = by_series(message_points(sample))
    assert not [key for key in points if key[0] == "docker_container_net"]
    assert points[("docker_container_mem", ())]["fail_count"] == 4


def test_recorded_inspect_gives_telegrafs_status_fields() -> None:
    recorded = load_lifecycle()
    inspect = recorded["inspect_stopped"]
    state = state_message(1, "h", CONTAINER, state_from_inspect(inspect),
                          timestamp=1, interval_s=1.0)
    [(measurement, tags, fields)] = message_points(state)  # no health check: no health point
    started = parse_docker_time(inspect["State"]["StartedAt"])
    finished = parse_docker_time(inspect["State"]["FinishedAt"])
    assert (measurement, tags) == ("docker_container_status", (("container_status", "exited"),))
    assert fields == {
        "oomkilled": inspect["State"]["OOMKilled"], "pid": inspect["State"]["Pid"],
        "exitcode": inspect["State"]["ExitCode"], "started_at": started,
        "finished_at": finished, "uptime_ns": finished - started,
        "restart_count": inspect["RestartCount"], "container_id": CONTAINER.id}

    running = recorded["inspect_running"]
    state = state_message(1, "h", CONTAINER, state_from_inspect(running),
                          timestamp=2 * 10**18, interval_s=1.0)
    fields = by_series(message_points(state))[
        ("docker_container_status", (("container_status", "running"),))]
    assert "exitcode" not in fields and "finished_at" not in fields  # never exited
    # Running: up until the message's time, as Telegraf counts until now.
    assert fields["uptime_ns"] == 2 * 10**18 - parse_docker_time(running["State"]["StartedAt"])


def test_health_point_only_with_a_health_check() -> None:
    points = by_series(message_points(make_state(
        status="running", health="unhealthy", health_failing_streak=5, finished_at=None,
        exit_code=None)))
    assert points[("docker_container_health", (("container_status", "running"),))] == {
        "health_status": "unhealthy", "failing_streak": 5}


def test_recorded_info_gives_telegrafs_docker_measurement() -> None:
    recorded = load_engine()
    info = recorded["info"]
    engine = engine_message(1, "h", engine_from_info("docker", info), timestamp=1,
                            interval_s=1.0)
    assert message_points(engine) == [("docker", (), {
        "n_containers": info["Containers"], "n_containers_running": info["ContainersRunning"],
        "n_containers_paused": info["ContainersPaused"],
        "n_containers_stopped": info["ContainersStopped"], "n_images": info["Images"],
        "n_cpus": info["NCPU"], "memory_total": info["MemTotal"]})]
    line = line_protocol([make_engine(host="node 1", server_version="20.10.24")]).decode()
    assert line.startswith("docker,engine_host=node\\ 1,server_version=20.10.24 memory_total=")
