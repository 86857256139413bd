"""Figures as ``docker stats`` prints them (docker/cli formatter/stats.go with go-units)."""

from __future__ import annotations

import pytest
from support.samples import make_state

from statspout import docker_format as fmt

KiB, MiB, GiB = 1024, 1024**2, 1024**3


@pytest.mark.parametrize(("size", "text"), [
    (0, "0B"),
    (1023, "1023B"),
    (1024, "1KiB"),
    (1536, "1.5KiB"),
    (int(12.3 * MiB), "12.3MiB"),
    (GiB, "1GiB"),
    (1_691_289_600, "1.575GiB"),  # 4 significant digits, as go-units' "%.4g"
    (52_428_800, "50MiB"),
    (1023 * MiB + 1023 * KiB, "1024MiB"),  # rounds up to 1024 without moving to GiB
    (2**64 - 1, "16EiB"),
])
def test_memory_in_binary_units_with_four_digits(size, text):
    assert fmt.binary_size(size) == text


@pytest.mark.parametrize(("size", "text"), [
    (0, "0B"),
    (999, "999B"),
    (1000, "1kB"),
    (3400, "3.4kB"),
    (1_234_567, "1.23MB"),  # 3 significant digits, as HumanSizeWithPrecision(x, 3)
    (999_500, "1e+03kB"),  # Go's %.3g of 999.5 is "1e+03" too
    (2**33, "8.59GB"),
])
def test_network_and_block_io_in_decimal_units_with_three_digits(size, text):
    assert fmt.decimal_size(size) == text


def test_cells_join_usage_and_limit_like_docker_stats():
    assert fmt.memory_usage(int(12.3 * MiB), GiB) == "12.3MiB / 1GiB"
    assert fmt.io_pair(3400, 1200) == "3.4kB / 1.2kB"
    assert fmt.percent(12.5) == "12.50%"
    assert fmt.percent(None) == "--"


@pytest.mark.parametrize(("seconds", "text"), [
    (0.44, "0.4s"), (-0.1, "0.0s"), (12.9, "12s"), (185, "3m05s"), (7260, "2h01m"),
    (None, "--"),
])
def test_ages(seconds, text):
    assert fmt.age(seconds) == text


@pytest.mark.parametrize(("changes", "text"), [
    (dict(status="running", exit_code=None, health="healthy"), "Up 5m (healthy)"),
    (dict(status="running", exit_code=None, health=None), "Up 5m"),
    (dict(status="paused", exit_code=None), "Up 5m (Paused)"),
    (dict(status="exited"), "Exited (3) 2m ago"),
    (dict(status="restarting"), "Restarting (3) 2m ago"),
    (dict(status="created", exit_code=None, started_at=None, finished_at=None), "Created"),
    (dict(status="dead"), "Dead"),
])
def test_status_as_docker_ps_writes_it(changes, text):
    now = 10_000 * 10**9
    times = dict(started_at=now - 300 * 10**9 - 1, finished_at=now - 150 * 10**9)
    state = make_state(**{**times, **changes})
    assert fmt.status(state, now) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (59.9, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (86400 * 3, "3d")])
def test_durations_are_compact(seconds, text):
    assert fmt.duration(seconds) == text
