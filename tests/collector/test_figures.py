"""The docker stats formulas, on a payload recorded from this machine's daemon (cgroup v1) and
on one in the documented cgroup v2 shape."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from statspout.collector.figures import (
    Reading,
    cpu_percent,
    mem_percent,
    parse_docker_time,
    reading_from_api,
)

PAYLOADS = Path(__file__).parent / "payloads"


def load(name: str) -> dict:
    return json.loads((PAYLOADS / name).read_text())


def previous_of(payload: dict, reading: Reading) -> Reading:
    """The reading the daemon's own precpu_stats describe, as our previous sample would."""
    pre = payload["precpu_stats"]
    return dataclasses.replace(
        reading,
        timestamp_ns=parse_docker_time(payload["preread"]),
        cpu_usage_ns=pre["cpu_usage"]["total_usage"],
        system_cpu_ns=pre["system_cpu_usage"],
    )


def test_cgroup_v1_payload_recorded_here():
    payload = load("cgroup_v1_api_1.41.json")
    reading = reading_from_api(payload)
    assert reading.timestamp_ns == 1795880802546915204
    assert reading.cpu_usage_ns == 3296230465
    assert reading.online_cpus == 2
    # usage 9416704 minus total_inactive_file 8388608 (the 8 MiB file the container wrote)
    assert reading.mem_usage == 9416704 - 8388608
    assert reading.mem_limit == 25276514304
    assert (reading.rx_bytes, reading.rx_packets, reading.tx_bytes) == (1042, 11, 0)
    assert reading.pids == 1
    expected = (3296230465 - 2333014773) / (1218180000000 - 1216170000000) * 2 * 100
    assert cpu_percent(previous_of(payload, reading), reading) == pytest.approx(expected)
    assert mem_percent(reading) == pytest.approx(1028096 / 25276514304 * 100)


def test_cgroup_v2_payload_shape():
    payload = load("cgroup_v2_shape.json")
    reading = reading_from_api(payload)
    assert reading.mem_usage == 209715200 - 62914560  # inactive_file on v2
    assert reading.online_cpus == 4
    assert (reading.blk_read_bytes, reading.blk_write_bytes) == (6029312 + 1048576, 4096 + 8192)
    # Byte counters past 32 bits stay exact: the original tool truncated them.
    assert reading.rx_bytes == 5000000100 and reading.tx_bytes == 4294967496
    assert (reading.rx_errors, reading.rx_dropped, reading.tx_errors, reading.tx_dropped) == (
        1, 2, 3, 4)
    assert reading.pids == 7
    # Δcpu 1 s over Δsystem 4 s on 4 CPUs: one full core.
    assert cpu_percent(previous_of(payload, reading), reading) == pytest.approx(100.0)
    assert mem_percent(reading) == pytest.approx(146800640 / 1073741824 * 100)


def test_no_previous_sample_means_no_cpu_figure_not_zero():
    reading = reading_from_api(load("cgroup_v2_shape.json"))
    assert cpu_percent(None, reading) is None


def test_counter_going_backwards_gives_no_cpu_figure():
    payload = load("cgroup_v2_shape.json")
    reading = reading_from_api(payload)
    restarted = dataclasses.replace(
        reading, cpu_usage_ns=10, system_cpu_ns=reading.system_cpu_ns + 1
    )
    assert cpu_percent(reading, restarted) is None


def test_wall_clock_cpu_percent_when_no_system_figure():
    before = Reading(timestamp_ns=0, cpu_usage_ns=0, system_cpu_ns=None, online_cpus=2,
                     mem_usage=0, mem_limit=0)
    after = dataclasses.replace(before, timestamp_ns=2_000_000_000, cpu_usage_ns=1_000_000_000)
    assert cpu_percent(before, after) == pytest.approx(50.0)
    assert mem_percent(after) is None  # no limit known


def test_stopped_container_payload_is_no_reading():
    assert reading_from_api({"read": "0001-01-01T00:00:00Z", "cpu_stats": {}}) is None


def test_memory_usage_without_inactive_file_is_the_usage():
    payload = load("cgroup_v2_shape.json")
    del payload["memory_stats"]["stats"]["inactive_file"]
    assert reading_from_api(payload).mem_usage == 209715200


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
