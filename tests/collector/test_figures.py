"""The docker stats formulas, on a payload recorded from this machine's daemon (cgroup v1) and
on one in the documented cgroup v2 shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.readings import make_reading, with_figures

from statspout import wire
from statspout.collector.discovery import ContainerInfo
from statspout.collector.figures import (
    Reading,
    cpu_percent,
    mem_percent,
    parse_docker_time,
    reading_from_api,
    stats_message,
)

PAYLOADS = Path(__file__).parent / "payloads"


def load(name: str) -> dict:
    return json.loads((PAYLOADS / name).read_text())


def previous_of(payload: dict, reading: Reading) -> Reading:
    """The reading the daemon's own precpu_stats describe, as our previous sample would."""
    pre = payload["precpu_stats"]
    return with_figures(
        reading,
        timestamp=parse_docker_time(payload["preread"]),
        cpu_usage_ns=pre["cpu_usage"]["total_usage"],
    )


def docker_stats_percent(payload: dict) -> float:
    """The docker CLI's formula: Δcontainer / Δsystem × online CPUs × 100."""
    cpu, pre = payload["cpu_stats"], payload["precpu_stats"]
    return ((cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"])
            / (cpu["system_cpu_usage"] - pre["system_cpu_usage"]) * cpu["online_cpus"] * 100)


def test_cgroup_v1_payload_recorded_here():
    payload = load("cgroup_v1_api_1.41.json")
    reading = reading_from_api(payload)
    assert reading.timestamp == 1795880802546915204
    assert reading.figures["cpu_usage_ns"] == 3296230465
    assert reading.figures["online_cpus"] == 2
    # usage 9416704 minus total_inactive_file 8388608 (the 8 MiB file the container wrote)
    assert reading.figures["mem_usage"] == 9416704 - 8388608
    assert reading.figures["mem_limit"] == 25276514304
    figures = reading.figures
    assert (figures["rx_bytes"], figures["rx_packets"], figures["tx_bytes"]) == (1042, 11, 0)
    assert reading.figures["pids"] == 1
    # Over the reads' own times (wall clock) the figure is docker stats' within 1 %: the
    # daemon's system counter moves in 10 ms ticks, the read times to the nanosecond.
    wall = (3296230465 - 2333014773) / (reading.timestamp - parse_docker_time(
        payload["preread"])) * 100
    assert cpu_percent(previous_of(payload, reading), reading) == pytest.approx(wall)
    assert wall == pytest.approx(docker_stats_percent(payload), rel=0.01)
    # The new figures, as the daemon gave them (cgroup v1: the total_* lines of memory.stat).
    stats = payload["memory_stats"]["stats"]
    assert figures["mem_cgroup_usage"] == 9416704
    assert figures["mem_cache"] == stats["total_cache"]
    assert figures["mem_rss"] == stats["total_rss"]
    assert figures["mem_inactive_file"] == 8388608
    assert figures["mem_max_usage"] == payload["memory_stats"]["max_usage"]
    assert figures["mem_failcnt"] is None  # Docker 20.10 does not send it
    assert figures["mem_stat"] == stats
    usage = payload["cpu_stats"]["cpu_usage"]
    assert figures["cpu_user_ns"] == usage["usage_in_usermode"]
    assert figures["cpu_system_ns"] == usage["usage_in_kernelmode"]
    throttling = payload["cpu_stats"]["throttling_data"]
    assert (figures["cpu_periods"], figures["cpu_throttled_periods"],
            figures["cpu_throttled_ns"]) == (throttling["periods"],
                                             throttling["throttled_periods"],
                                             throttling["throttled_time"])
    assert figures["oom_kills"] is None  # the API does not give the cgroup's counter
    assert figures["net_interfaces"] == {"eth0": {
        key: payload["networks"]["eth0"][key] for key in figures["net_interfaces"]["eth0"]}}
    assert mem_percent(reading) == pytest.approx(1028096 / 25276514304 * 100)


def test_cgroup_v2_payload_shape():
    payload = load("cgroup_v2_shape.json")
    reading = reading_from_api(payload)
    assert reading.figures["mem_usage"] == 209715200 - 62914560  # inactive_file on v2
    assert reading.figures["online_cpus"] == 4
    figures = reading.figures
    assert figures["blk_read_bytes"] == 6029312 + 1048576
    assert figures["blk_write_bytes"] == 4096 + 8192
    # Byte counters past 32 bits stay exact: the original tool truncated them.
    assert figures["rx_bytes"] == 5000000100 and figures["tx_bytes"] == 4294967496
    errors = ("rx_errors", "rx_dropped", "tx_errors", "tx_dropped")
    assert [figures[name] for name in errors] == [1, 2, 3, 4]
    assert reading.figures["pids"] == 7
    # Δcpu 1 s over Δsystem 4 s on 4 CPUs (docker stats), and over 1 s of wall clock: one core.
    assert docker_stats_percent(payload) == pytest.approx(100.0)
    # (the reads 1.002 s apart)
    assert cpu_percent(previous_of(payload, reading), reading) == pytest.approx(100.0, rel=0.01)
    # v2 names: anon, file, file_mapped; no max_usage, failcnt or swap in the API's v2 payload
    assert (figures["mem_rss"], figures["mem_cache"]) == (
        payload["memory_stats"]["stats"]["anon"], payload["memory_stats"]["stats"]["file"])
    assert figures["mem_max_usage"] is None and figures["mem_failcnt"] is None
    assert figures["mem_swap"] is None
    assert figures["blk_devices"] == {"254:0": {"read_bytes": 6029312, "write_bytes": 4096},
                                      "254:16": {"read_bytes": 1048576, "write_bytes": 8192}}
    assert mem_percent(reading) == pytest.approx(146800640 / 1073741824 * 100)


def test_no_previous_sample_means_no_cpu_figure_not_zero():
    reading = reading_from_api(load("cgroup_v2_shape.json"))
    assert cpu_percent(None, reading) is None


def test_counter_going_backwards_gives_no_cpu_figure():
    payload = load("cgroup_v2_shape.json")
    reading = reading_from_api(payload)
    restarted = with_figures(reading, timestamp=reading.timestamp + 1, cpu_usage_ns=10)
    assert cpu_percent(reading, restarted) is None


def test_cpu_percent_over_wall_clock_time():
    before = make_reading(timestamp=0, online_cpus=2)
    after = with_figures(before, timestamp=2_000_000_000, cpu_usage_ns=1_000_000_000)
    assert cpu_percent(before, after) == pytest.approx(50.0)
    assert mem_percent(after) is None  # no limit known


def test_stopped_container_payload_is_no_reading():
    assert reading_from_api({"read": "0001-01-01T00:00:00Z", "cpu_stats": {}}) is None


def test_memory_usage_without_inactive_file_is_the_usage():
    payload = load("cgroup_v2_shape.json")
    del payload["memory_stats"]["stats"]["inactive_file"]
    assert reading_from_api(payload).figures["mem_usage"] == 209715200


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T15:40:02.500000001Z", 1795880402500000001),
        ("2026-11-28T15:40:02Z", 1795880402000000000),
        ("2026-11-28T16:40:02.5+01:00", 1795880402500000000),
    ],
)
def test_daemon_times_keep_nanoseconds(text, expected):
    assert parse_docker_time(text) == expected


def test_unparseable_time_is_an_error():
    with pytest.raises(ValueError, match="unparseable"):
        parse_docker_time("yesterday")


def test_a_reading_missing_a_figure_is_refused_by_name():
    figures = dict(make_reading().figures)
    del figures["pids"]
    with pytest.raises(ValueError, match="missing \\['pids'\\]"):
        Reading(0, figures)
    with pytest.raises(ValueError, match="unknown \\['gpu_percent'\\]"):
        Reading(0, {**make_reading().figures, "gpu_percent": 1})


def test_stats_message_carries_every_figure_under_its_wire_name():
    payload = load("cgroup_v1_api_1.41.json")
    reading = reading_from_api(payload)
    info = ContainerInfo("c0ffee", "web", "nginx", {"app": "web"})
    message = stats_message(7, "host-a", info, reading, previous_of(payload, reading),
                            interval_s=2.5, oom_events=3)
    sent = wire.decode(wire.encode(message))
    assert isinstance(sent, wire.ContainerStats)
    assert (sent.seq, sent.host, sent.id, sent.name, sent.labels) == (
        7, "host-a", "c0ffee", "web", {"app": "web"})
    assert sent.timestamp == reading.timestamp
    assert {name: getattr(sent, name) for name in wire.READ_FIGURES} == reading.figures
    assert sent.cpu_percent == pytest.approx(cpu_percent(previous_of(payload, reading), reading))
    assert sent.mem_percent == pytest.approx(mem_percent(reading))
    assert (sent.interval_s, sent.oom_events) == (2.5, 3)


def test_podman_payload_without_memory_stat_reads_nulls_not_zeros():
    payload = load("cgroup_v1_api_1.41.json")
    del payload["memory_stats"]["stats"]
    del payload["memory_stats"]["max_usage"]
    figures = reading_from_api(payload).figures
    assert figures["mem_usage"] == figures["mem_cgroup_usage"] == 9416704
    for name in ("mem_stat", "mem_rss", "mem_cache", "mem_inactive_file", "mem_max_usage",
                 "mem_failcnt"):
        assert figures[name] is None, name
