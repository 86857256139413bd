"""Every figure of wire 1.1 made to happen by a real container, as the InfluxDB sink (real
influxd, InfluxQL) and the Prometheus sink (real Prometheus scrape) store it, against the stdout
JSON sink's copy of the same sample and the raw source (the cgroup file, ``docker inspect``,
``docker info``). The collector-side version of this is test_figures_e2e.py."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from support.docker_cgroups import cgroup_file, needs_docker_cgroup_v1
from support.influxd import running_influxd
from support.ports import free_port
from support.processes import Pipeline, Process, program
from support.prometheus_server import prometheus_server
from support.waiting import passes_within, wait_for

from statspout.collector.cgroup_files import parse_flat_keyed, read_text
from statspout.collector.figures import parse_docker_time
from statspout.sinks.influxdb import MEM_STAT_FIELDS, telegraf_mem_usage

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

MiB = 1024 * 1024
DB = "figures"


def sink(name: str, publish: str, *options: str) -> Process:
    return Process([program("statspout-sink"), name, "--connect", publish, *options])


@needs_docker_cgroup_v1
@pytest.mark.parametrize("source", ["api", "cgroup"])
def test_influxdb_and_prometheus_store_every_figure_as_telegraf_and_cadvisor(
    figure_containers, make_container, docker_client, endpoints, run_id, internal_network, source
):
    names, c = figure_containers.names, figure_containers.containers
    prometheus_port = free_port()
    shown: dict[str, Any] = {}  # figures printed at the end (pytest -s), for the record
    _, publish = endpoints
    with running_influxd() as influx, \
            prometheus_server([f"127.0.0.1:{prometheus_port}"]) as prom, \
            Pipeline(endpoints, run_id, collector_args=["--source", source]) as pipeline:
        influx.create_database(DB)
        sinks = [
            sink("influxdb", publish, "--influxdb.api", "v1", "--influxdb.url", influx.url,
                 "--influxdb.database", DB, "--influxdb.batch-size", "50"),
            sink("prometheus", publish, "--prometheus.address", f"127.0.0.1:{prometheus_port}"),
        ]
        try:
            def samples(kind: str) -> list[dict[str, Any]]:
                return pipeline.samples(names[kind])

            def influx_row(measurement: str, kind: str, condition: str = "",
                           timeout: float = 30) -> dict[str, Any]:
                where = f"container_name = '{names[kind]}'" + (f" AND {condition}"
                                                                 if condition else "")
                return wait_for(lambda: influx.rows(
                    f"SELECT * FROM {measurement} WHERE {where} ORDER BY time DESC LIMIT 1",
                    DB), timeout, f"{measurement} of {kind} ({condition})")[0]

            def same_sample(kind: str, row: dict[str, Any]) -> dict[str, Any]:
                """The stdout sink's copy of the sample InfluxDB stored in ``row``."""
                return wait_for(lambda: next((s for s in samples(kind)
                                              if s["timestamp"] == row["time"]), None),
                                10, f"the stdout sink's copy of the {kind} sample")

            def sample_with(kind: str, figure, value: float) -> dict[str, Any]:
                """The stdout sink's copy of the sample whose ``figure(sample)`` is ``value``
                (Prometheus may have scraped it before the stdout sink printed it)."""
                return wait_for(lambda: next((s for s in samples(kind)
                                              if figure(s) == value), None),
                                10, f"a {kind} sample with {value}")

            def prom_value(expr: str, condition=lambda v: True, timeout: float = 30) -> float:
                result = prom.wait_for(expr, lambda r: len(r) == 1 and condition(
                    float(r[0]["value"][1])), timeout)
                return float(result[0]["value"][1])

            # A child OOM-killed once the collector follows its container: Docker's oom event.
            wait_for(lambda: samples("oomchild"), 30, "the first sample of the oom container")
            figure_containers.oom_a_child()
            wait_for(lambda: any((s.get("oom_events") or 0) >= 1 for s in samples("oomchild")),
                     30, "the oom event counted in the container's samples")

            # Traffic to the container on the internal network, from the host's end of it.
            c.net.reload()
            address = c.net.attrs["NetworkSettings"]["Networks"][internal_network.name]["IPAddress"]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                for _ in range(20):
                    udp.sendto(b"x" * 1000, (address, 9))

            # --cpus 0.2 busy loop: throttling, user and kernel time
            row = influx_row("docker_container_cpu", "throttled",
                             "throttling_throttled_periods >= 3")
            sample = same_sample("throttled", row)
            raw = parse_flat_keyed(cgroup_file("cpu", c.throttled.id, "cpu.stat"))
            assert row["cpu"] == "cpu-total"
            assert (row["usage_in_usermode"], row["usage_in_kernelmode"], row["usage_total"]) == (
                sample["cpu_user_ns"], sample["cpu_system_ns"], sample["cpu_usage_ns"])
            assert (row["throttling_periods"], row["throttling_throttled_periods"],
                    row["throttling_throttled_time"]) == (
                sample["cpu_periods"], sample["cpu_throttled_periods"], sample["cpu_throttled_ns"])
            assert 0 < row["throttling_throttled_time"] <= raw["throttled_time"]
            assert row["throttling_throttled_periods"] <= raw["nr_throttled"]
            shown["throttled: InfluxDB throttling_periods, _throttled_periods, _throttled_time, "
                  "usage_in_usermode / raw cpu.stat nr_periods, nr_throttled, throttled_time"] = (
                row["throttling_periods"], row["throttling_throttled_periods"],
                row["throttling_throttled_time"], row["usage_in_usermode"], raw["nr_periods"],
                raw["nr_throttled"], raw["throttled_time"])
            throttled_s = prom_value(
                f'container_cpu_cfs_throttled_seconds_total{{name="{names["throttled"]}"}}')
            sample_with("throttled", lambda s: s["cpu_throttled_ns"] / 1e9, throttled_s)
            periods = prom_value(
                f'container_cpu_cfs_throttled_periods_total{{name="{names["throttled"]}"}}')
            sample_with("throttled", lambda s: s["cpu_throttled_periods"], periods)
            user_s = prom_value(f'container_cpu_user_seconds_total{{name="{names["throttled"]}"}}')
            sample_with("throttled", lambda s: s["cpu_user_ns"] / 1e9, user_s)

            # 48 MiB written to the container's filesystem: page cache in usage, not working set
            def stored_memory() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], int]:
                row = influx_row("docker_container_mem", "cache", f"cache >= {40 * MiB}")
                sample = same_sample("cache", row)
                stat = sample["mem_stat"]
                raw_usage = int(cgroup_file("memory", c.cache.id, "memory.usage_in_bytes"))
                assert row["usage"] == telegraf_mem_usage(sample["mem_cgroup_usage"], stat)
                assert row["usage"] == sample["mem_cgroup_usage"] - stat["cache"]  # v1: less cache
                assert sample["mem_cgroup_usage"] == pytest.approx(raw_usage, abs=2 * MiB)
                return row, sample, stat, raw_usage

            row, sample, stat, raw_usage = passes_within(stored_memory, 10)
            assert row["usage_percent"] == pytest.approx(row["usage"] / row["limit"] * 100)
            assert {key: row[key] for key in stat if key in MEM_STAT_FIELDS} == {
                key: value for key, value in stat.items() if key in MEM_STAT_FIELDS}
            assert row["max_usage"] == sample["mem_max_usage"]
            shown["cache: InfluxDB usage, cache, total_inactive_file, usage_percent / stdout "
                  "mem_cgroup_usage, mem_stat cache / raw memory.usage_in_bytes"] = (
                row["usage"], row["cache"], row["total_inactive_file"], row["usage_percent"],
                sample["mem_cgroup_usage"], stat["cache"], raw_usage)
            # Prometheus: usage includes the cache, the working set does not
            cache_name = names["cache"]
            # One query: every figure from the same scrape.
            memory = {row["metric"]["__name__"]: float(row["value"][1]) for row in prom.wait_for(
                f'{{name="{cache_name}",__name__=~"container_memory_(usage_bytes|'
                f'working_set_bytes|cache|rss|mapped_file)"}}', lambda r: len(r) == 5)}
            usage = memory["container_memory_usage_bytes"]
            sample = sample_with("cache", lambda s: s["mem_cgroup_usage"], usage)
            working_set = memory["container_memory_working_set_bytes"]
            assert working_set == sample["mem_usage"] == usage - sample["mem_inactive_file"]
            assert usage - working_set >= 40 * MiB
            assert (memory["container_memory_cache"], memory["container_memory_rss"],
                    memory["container_memory_mapped_file"]) == (
                sample["mem_cache"], sample["mem_rss"], sample["mem_mapped_file"])
            shown["cache: Prometheus usage, working set, cache / stdout mem_cgroup_usage, "
                  "mem_usage, mem_cache / raw memory.usage_in_bytes"] = (
                usage, working_set, memory["container_memory_cache"], sample["mem_cgroup_usage"],
                sample["mem_usage"], sample["mem_cache"], raw_usage)
            # Block devices: per device and total
            devices = sample["blk_devices"]
            for device, io in devices.items():
                row = influx_row("docker_container_blkio", "cache",
                                 f"device = '{device}' AND time = {sample['timestamp']}")
                assert (row["io_service_bytes_recursive_read"],
                        row["io_service_bytes_recursive_write"]) == (
                    io["read_bytes"], io["write_bytes"])
                written = prom_value(f'container_fs_writes_bytes_total{{name="{cache_name}",'
                                     f'device="{device}"}}')
                sample_with("cache", lambda s, device=device: s["blk_devices"].get(
                    device, {}).get("write_bytes"), written)
            row = influx_row("docker_container_blkio", "cache",
                             f"device = 'total' AND time = {sample['timestamp']}")
            assert row["io_service_bytes_recursive_write"] == sample["blk_write_bytes"]

            # Per interface, on the internal network
            row = influx_row("docker_container_net", "net", "network = 'eth0' AND rx_packets >= 20")
            sample = same_sample("net", row)
            assert {key: row[key] for key in sample["net_interfaces"]["eth0"]} == (
                sample["net_interfaces"]["eth0"])
            total = influx_row("docker_container_net", "net",
                               f"network = 'total' AND time = {sample['timestamp']}")
            assert total["rx_bytes"] == sample["rx_bytes"] == row["rx_bytes"]
            raw_net = read_text(f"/proc/{c.net.attrs['State']['Pid']}/net/dev")
            raw_rx = int(next(line for line in raw_net.splitlines()
                              if line.strip().startswith("eth0:")).split(":")[1].split()[0])
            assert row["rx_bytes"] <= raw_rx
            received = prom_value(f'container_network_receive_bytes_total{{name="{names["net"]}",'
                                  f'interface="eth0"}}', lambda v: v >= 20_000)
            sample_with("net", lambda s: s["net_interfaces"]["eth0"]["rx_bytes"], received)
            shown["net: InfluxDB eth0 rx_bytes, total rx_bytes, Prometheus eth0 rx_bytes / raw "
                  "/proc/PID/net/dev eth0 rx_bytes"] = (row["rx_bytes"], total["rx_bytes"],
                                                         received, raw_rx)
            assert prom.query(f'container_network_receive_bytes_total{{name="{names["net"]}",'
                              f'interface=""}}') == []  # no total series, as cAdvisor
            # --network none: no interface, no network point (Telegraf) nor series (cAdvisor)
            assert influx.rows(f"SELECT * FROM docker_container_net WHERE container_name = "
                               f"'{names['cache']}'", DB) == []

            # A failing health check
            row = influx_row("docker_container_health", "unhealthy",
                             "health_status = 'unhealthy'")
            c.unhealthy.reload()
            inspected_streak = c.unhealthy.attrs["State"]["Health"]["FailingStreak"]
            assert 2 <= row["failing_streak"] <= inspected_streak
            assert row["container_status"] == "running"
            shown["unhealthy: InfluxDB health_status, failing_streak / docker inspect"] = (
                row["health_status"], row["failing_streak"],
                c.unhealthy.attrs["State"]["Health"]["FailingStreak"])
            assert prom_value(f'statspout_container_health_status{{name="{names["unhealthy"]}",'
                              'status="unhealthy"}') == 1
            streak = prom_value(
                f'statspout_container_health_failing_streak{{name="{names["unhealthy"]}"}}')
            assert 2 <= streak <= c.unhealthy.attrs["State"]["Health"]["FailingStreak"] + 2

            # The restart policy gives up after 2 restarts; the exit code and times
            row = influx_row("docker_container_status", "restarting",
                             "container_status = 'exited' AND restart_count = 2", timeout=40)
            c.restarting.reload()
            state = c.restarting.attrs["State"]
            started, finished = (parse_docker_time(state["StartedAt"]),
                                 parse_docker_time(state["FinishedAt"]))
            assert (row["exitcode"], row["restart_count"], row["pid"]) == (
                state["ExitCode"], c.restarting.attrs["RestartCount"], state["Pid"]) == (3, 2, 0)
            assert (row["started_at"], row["finished_at"], row["uptime_ns"]) == (
                started, finished, finished - started)
            assert row["container_id"] == c.restarting.id and row["oomkilled"] is False
            shown["restarting: InfluxDB exitcode, restart_count, started_at, finished_at, "
                  "uptime_ns / docker inspect StartedAt, FinishedAt"] = (
                row["exitcode"], row["restart_count"], row["started_at"], row["finished_at"],
                row["uptime_ns"], state["StartedAt"], state["FinishedAt"])
            restarting_name = names["restarting"]
            assert prom_value(f'statspout_container_state{{name="{restarting_name}",'
                              'state="exited"}', lambda v: v == 1) == 1
            assert prom_value(f'statspout_container_restarts{{name="{restarting_name}"}}') == 2
            assert prom_value(f'statspout_container_exit_code{{name="{restarting_name}"}}') == 3
            assert prom_value(f'container_start_time_seconds{{name="{restarting_name}"}}') == (
                started // 10**9)

            # OOM kills: the main process (state), and a child (Docker's oom event)
            row = influx_row("docker_container_status", "oomkilled", "oomkilled = true")
            c.oomkilled.reload()
            assert c.oomkilled.attrs["State"]["OOMKilled"] is True
            assert (row["exitcode"], row["container_status"]) == (137, "exited")
            assert prom_value(f'statspout_container_oom_killed{{name="{names["oomkilled"]}"}}',
                              lambda v: v == 1) == 1
            events = prom_value(
                f'container_oom_events_total{{name="{names["oomchild"]}"}}', lambda v: v >= 1)
            # cAdvisor's meaning: kills (the cgroup's counter where read), else Docker's events
            sample_with("oomchild", lambda s: s["oom_kills"] if s["oom_kills"] is not None
                        else s["oom_events"], events)
            shown["oom: InfluxDB oomkilled, exitcode / inspect OOMKilled; Prometheus oomchild "
                  "container_oom_events_total"] = (row["oomkilled"], row["exitcode"],
                                                   c.oomkilled.attrs["State"]["OOMKilled"],
                                                   events)

            # The engine
            info = docker_client.info()
            row = wait_for(lambda: influx.rows(
                "SELECT * FROM docker ORDER BY time DESC LIMIT 1", DB), 15, "docker")[0]
            assert (row["n_cpus"], row["memory_total"], row["server_version"],
                    row["engine_host"]) == (info["NCPU"], info["MemTotal"],
                                            info["ServerVersion"], "e2e-host")
            assert row["n_containers"] == (row["n_containers_running"]
                                           + row["n_containers_paused"]
                                           + row["n_containers_stopped"])
            assert prom_value('machine_cpu_cores{host="e2e-host"}') == info["NCPU"]
            assert prom_value('machine_memory_bytes{host="e2e-host"}') == info["MemTotal"]
            shown["engine: InfluxDB n_cpus, memory_total, n_containers / docker info"] = (
                row["n_cpus"], row["memory_total"], row["n_containers"], info["NCPU"],
                info["MemTotal"], info["Containers"])
        finally:
            for process in sinks:
                assert process.stop() == 0, process.log()
        for process in sinks:
            assert "sink_errors=0" in process.log() and "malformed=0" in process.log(), (
                process.log())
    for what, figures in shown.items():
        print(f"{source} source, {what}: {figures}")
