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
        system_cpu_ns=pre["system_cpu_usage"],
        cpu_usage_ns=pre["cpu_usage"]["total_usage"],
    )


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
    expected = (3296230465 - 2333014773) / (1218180000000 - 1216170000000) * 2 * 100
    assert cpu_percent(previous_of(payload, reading), reading) == pytest.approx(expected)
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
    # Δcpu 1 s over Δsystem 4 s on 4 CPUs: one full core.
    assert cpu_percent(previous_of(payload, reading), reading) == pytest.approx(100.0)
    assert mem_percent(reading) == pytest.approx(146800640 / 1073741824 * 100)


def test_no_previous_sample_means_no_cpu_figure_not_zero():
    reading = reading_from_api(load("cgroup_v2_shape.json"))
    assert cpu_percent(None, reading) is None


def test_counter_going_backwards_gives_no_cpu_figure():
    payload = load("cgroup_v2_shape.json")
    reading = reading_from_api(payload)
    restarted = with_figures(reading, system_cpu_ns=reading.system_cpu_ns + 1, cpu_usage_ns=10)
    assert cpu_percent(reading, restarted) is None


def test_wall_clock_cpu_percent_when_no_system_figure():
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
        Reading(0, None, figures)
    with pytest.raises(ValueError, match="unknown \\['gpu_percent'\\]"):
        Reading(0, None, {**make_reading().figures, "gpu_percent": 1})


def test_stats_message_carries_every_figure_under_its_wire_name():
    payload = load("cgroup_v1_api_1.41.json")
    reading = reading_from_api(payload)
    info = ContainerInfo("c0ffee", "web", "nginx", {"app": "web"})
    message = stats_message(7, "host-a", info, reading, previous_of(payload, reading))
    sent = wire.decode(wire.encode(message))
    assert isinstance(sent, wire.ContainerStats)
    assert (sent.seq, sent.host, sent.id, sent.name, sent.labels) == (
        7, "host-a", "c0ffee", "web", {"app": "web"})
    assert sent.timestamp == reading.timestamp
    assert {name: getattr(sent, name) for name in wire.READ_FIGURES} == reading.figures
    assert sent.cpu_percent == pytest.approx(cpu_percent(previous_of(payload, reading), reading))
    assert sent.mem_percent == pytest.approx(mem_percent(reading))
