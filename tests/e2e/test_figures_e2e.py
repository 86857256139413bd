"""Every figure of wire 1.1 made to happen by a real container, read through the real collector
(both sources), a real router and the stdout JSON sink, and compared with its raw source: the
cgroup file, /proc, or Docker's own inspect.

Stats come from the stdout sink's JSON lines; state and engine messages, which the stdout sink
does not print yet (the sinks' side of issue 10), from a SUB socket on the same router's output.
"""

from __future__ import annotations

import os
import socket

import pytest
import zmq
from support.docker_cgroups import cgroup_file, needs_docker_cgroup_v1
from support.processes import Pipeline
from support.waiting import passes_within, wait_for

from statspout import bus, wire
from statspout.collector.cgroup_files import parse_flat_keyed, parse_net_dev, read_text

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

MiB = 1024 * 1024
SPIN = "while :; do :; done"
TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


class RouterTap:
    """A subscriber to the router's ``all`` route: every message it sends, decoded."""

    def __init__(self, endpoint: str) -> None:
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.SUBSCRIBE, bus.topic_for(bus.DEFAULT_ROUTE))
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.connect(endpoint)
        self.messages: list[wire.Message] = []

    def drain(self) -> list[wire.Message]:
        while self._socket.poll(0):
            _topic, _number, payload = self._socket.recv_multipart()
            self.messages.extend(wire.decode_all(payload))
        return self.messages

    def states(self, name: str) -> list[wire.ContainerState]:
        return [m for m in self.drain() if isinstance(m, wire.ContainerState) and m.name == name]

    def close(self) -> None:
        self._socket.close()
        self._context.term()


def last(samples: list[dict]) -> dict:
    return samples[-1] if samples else {}


@needs_docker_cgroup_v1
@pytest.mark.parametrize("source", ["api", "cgroup"])
def test_every_new_figure_against_its_raw_source(
    figure_containers, make_container, docker_client, endpoints, run_id, source, internal_network
):
    names, c = figure_containers.names, figure_containers.containers
    tap = RouterTap(endpoints[1])
    try:
        with Pipeline(endpoints, run_id, collector_args=["--source", source]) as pipeline:
            def samples(kind: str) -> list[dict]:
                return pipeline.samples(names[kind])

            # Traffic to the container on the internal network, from the host's end of it.
            c.net.reload()
            address = c.net.attrs["NetworkSettings"]["Networks"][internal_network.name]["IPAddress"]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                for _ in range(20):
                    udp.sendto(b"x" * 1000, (address, 9))

            # CPU throttling: a busy loop under --cpus 0.2
            wait_for(lambda: (last(samples("throttled")).get("cpu_throttled_periods") or 0) >= 5,
                     30, "throttled periods of the --cpus 0.2 container")
            sample = samples("throttled")[-1]
            raw = parse_flat_keyed(cgroup_file("cpu", c.throttled.id, "cpu.stat"))
            assert 0 < sample["cpu_throttled_periods"] <= sample["cpu_periods"] <= raw["nr_periods"]
            assert sample["cpu_throttled_periods"] <= raw["nr_throttled"]
            assert 0 < sample["cpu_throttled_ns"] <= raw["throttled_time"]
            ticks = parse_flat_keyed(cgroup_file("cpuacct", c.throttled.id, "cpuacct.stat"))
            assert 0 < sample["cpu_user_ns"] <= ticks["user"] * TICK_NS
            assert sample["cpu_system_ns"] <= ticks["system"] * TICK_NS
            # user + system is the whole CPU time, to the tick resolution
            assert sample["cpu_user_ns"] + sample["cpu_system_ns"] == pytest.approx(
                sample["cpu_usage_ns"], rel=0.1, abs=50 * TICK_NS)
            assert sample["interval_s"] == 1.0

            # Page cache: 48 MiB written to the container's own filesystem
            wait_for(lambda: (last(samples("cache")).get("mem_cache") or 0) >= 40 * MiB,
                     30, "the written file in the page cache")

            def cache_figures() -> None:
                sample = samples("cache")[-1]
                usage = int(cgroup_file("memory", c.cache.id, "memory.usage_in_bytes"))
                stat = parse_flat_keyed(cgroup_file("memory", c.cache.id, "memory.stat"))
                assert sample["mem_cgroup_usage"] == pytest.approx(usage, abs=2 * MiB)
                page_cache = sample["mem_cgroup_usage"] - sample["mem_usage"]
                assert page_cache == sample["mem_inactive_file"]
                assert page_cache >= 40 * MiB
                assert sample["mem_cache"] == pytest.approx(stat["total_cache"], abs=2 * MiB)
                for figure, key in (("mem_rss", "total_rss"),
                                    ("mem_mapped_file", "total_mapped_file"),
                                    ("mem_pgmajfault", "total_pgmajfault")):
                    assert sample[figure] == pytest.approx(stat[key], abs=2 * MiB), figure
                assert 0 < sample["mem_pgfault"] <= stat["total_pgfault"]
                assert sample["mem_max_usage"] >= sample["mem_cgroup_usage"]
                assert sample["mem_stat"]["total_cache"] == sample["mem_cache"]
                if source == "cgroup":
                    assert sample["mem_failcnt"] == int(cgroup_file("memory", c.cache.id,
                                                                    "memory.failcnt"))
                    assert sample["oom_kills"] == 0
                else:
                    assert sample["oom_kills"] is None  # the API does not give it: null, not 0

            passes_within(cache_figures, 10)

            # An OOM kill of a child, once the collector samples the container: the container
            # runs on, its counters say so.
            wait_for(lambda: samples("oomchild"), 30, "the first sample of the oom container")
            figure_containers.oom_a_child()
            wait_for(lambda: (last(samples("oomchild")).get("oom_events") or 0) >= 1, 30,
                     "the oom event counted in the container's samples")
            c.oomchild.reload()
            assert c.oomchild.status == "running"  # only the child was killed
            sample = samples("oomchild")[-1]
            raw_kills = parse_flat_keyed(cgroup_file("memory", c.oomchild.id, "memory.oom_control"))
            if source == "cgroup":
                assert sample["oom_kills"] == raw_kills["oom_kill"] >= 1
            assert sample["mem_limit"] == 16 * MiB

            # Per interface: the UDP datagrams arrived on eth0
            wait_for(lambda: (last(samples("net")).get("rx_packets") or 0) >= 20,
                     30, "the datagrams counted")
            sample = samples("net")[-1]
            c.net.reload()
            raw_net = parse_net_dev(read_text(f"/proc/{c.net.attrs['State']['Pid']}/net/dev"))
            assert list(sample["net_interfaces"]) == ["eth0"] == list(raw_net)
            eth0 = sample["net_interfaces"]["eth0"]
            assert 20 * 1000 <= eth0["rx_bytes"] <= raw_net["eth0"]["rx_bytes"]
            for key, value in eth0.items():
                assert sample[key] == value, key  # the totals are the sums
                assert value <= raw_net["eth0"][key], key
            # Per device, totals the sums
            for kind in ("cache", "net"):
                sample = samples(kind)[-1]
                devices = sample["blk_devices"]
                assert all(key.count(":") == 1 for key in devices)
                assert sample["blk_write_bytes"] == sum(d["write_bytes"] for d in devices.values())
                assert sample["blk_read_bytes"] == sum(d["read_bytes"] for d in devices.values())

            # States: health, restarts, the OOM-killed main process
            unhealthy_state = wait_for(
                lambda: [s for s in tap.states(names["unhealthy"]) if s.health == "unhealthy"],
                30, "the unhealthy state")[-1]
            c.unhealthy.reload()
            assert c.unhealthy.attrs["State"]["Health"]["Status"] == "unhealthy"
            assert unhealthy_state.health_failing_streak >= 2  # --health-retries 2
            assert unhealthy_state.status == "running" and unhealthy_state.exit_code is None
            assert unhealthy_state.pid == c.unhealthy.attrs["State"]["Pid"]

            restarted = wait_for(
                lambda: [s for s in tap.states(names["restarting"])
                         if s.status == "exited" and s.restart_count == 2],
                40, "the restart policy to give up")[-1]
            c.restarting.reload()
            assert (restarted.exit_code, c.restarting.attrs["State"]["ExitCode"]) == (3, 3)
            assert c.restarting.attrs["RestartCount"] == 2
            assert restarted.finished_at > restarted.started_at > 0

            killed = wait_for(
                lambda: [s for s in tap.states(names["oomkilled"]) if s.oom_killed],
                30, "the OOM-killed state")[-1]
            c.oomkilled.reload()
            assert c.oomkilled.attrs["State"]["OOMKilled"] is True
            assert (killed.status, killed.exit_code, killed.pid) == ("exited", 137, 0)

            # Every interval, every container of the test: the stopped ones too
            count = len(tap.states(names["oomkilled"]))
            wait_for(lambda: len(tap.states(names["oomkilled"])) >= count + 2, 10,
                     "two more state messages of the exited container")

            # The engine, once per interval
            engines = [m for m in tap.drain() if isinstance(m, wire.EngineInfo)]
            assert engines and engines[-1].engine == "docker"
            info = docker_client.info()
            assert (engines[-1].cpus, engines[-1].memory_total, engines[-1].server_version) == (
                info["NCPU"], info["MemTotal"], info["ServerVersion"])
            assert engines[-1].containers_running >= 5
    finally:
        tap.close()
    final_report = [line for line in pipeline.sink.stderr if "received=" in line][-1]
    assert "malformed=0" in final_report and "gaps=0" in final_report
