"""bench/fleet.py at a tiny size: real collectors' wire, router, three sinks and influxd; every
sample accounted for, and a report that says so. (The figures themselves are the benchmark's,
not asserted here.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "bench" / "fleet.py"
HOSTS, CONTAINERS, SECONDS = 2, 5, 3

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fleet_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess,
                                                                 dict[str, Any]]:
    out = tmp_path_factory.mktemp("fleet") / "fleet.json"
    done = subprocess.run(
        [sys.executable, str(FLEET), "--hosts", str(HOSTS), "--containers", str(CONTAINERS),
         "--seconds", str(SECONDS), "--interval", "1", "--scrape-every", "1", "--settle", "10",
         "--start-timeout", "60", "--json", str(out)],
        capture_output=True, text=True, timeout=150, cwd=ROOT,
    )
    assert out.exists(), done.stdout + done.stderr
    return done, json.loads(out.read_text())


def test_tiny_fleet_loses_nothing(fleet_run: tuple[subprocess.CompletedProcess, dict]) -> None:
    done, result = fleet_run
    assert result["losses"] == {}, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    samples = HOSTS * CONTAINERS * SECONDS
    assert result["sent"] == {"stats": samples, "states": samples, "engines": HOSTS * SECONDS}
    assert result["held"] == {"influxdb": samples, "influx_states": samples, "stdout": samples,
                              "prometheus": samples}
    assert result["prometheus"]["series"] == HOSTS * CONTAINERS
    assert result["prometheus"]["scrapes_while_all_published"] >= 1
    hosts = result["router_status"]["hosts"]
    assert len(hosts) == HOSTS and all(h["gaps"] == 0 for h in hosts.values())
    assert result["router_status"]["routes"]["all"]["out"] == result["sent_messages"]
    for sink in ("influxdb", "prometheus", "stdout"):
        assert result["reports"][sink]["samples"] == samples, sink
        assert result["reports"][sink]["gaps"] == 0, sink
        assert result["exit_codes"][sink] == 0, sink
    # Every store's latency was measured from its own probe readings.
    assert result["latency"]["influxdb"][2] > 0 and result["latency"]["stdout"][2] > 0
    assert all(result["cpu_s"][name] >= 0 for name in ("router", "influxdb", "influxd"))
    assert all(result["rss"][name] > 0 for name in ("router", "influxdb", "prometheus",
                                                    "stdout", "influxd"))


def test_report_is_a_table_with_every_process(
    fleet_run: tuple[subprocess.CompletedProcess, dict]
) -> None:
    done, _ = fleet_run
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    names = [line.split("|")[1].strip() for line in table[2:]]
    assert names == ["collectors (in)", "router", "influxdb sink", "influxd (the store)",
                     "prometheus sink", "stdout sink"]
    assert all(line.count("|") == table[0].count("|") for line in table)
    assert done.stdout.rstrip().endswith("loss: none")


def test_a_missing_row_is_loss(monkeypatch: pytest.MonkeyPatch,
                               fleet_run: tuple[subprocess.CompletedProcess, dict]) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import fleet

    _, result = fleet_run
    result["held"] = {**result["held"], "influxdb": result["held"]["influxdb"] - 1}
    assert fleet.losses(result) == {"influxdb samples missing": 1}
