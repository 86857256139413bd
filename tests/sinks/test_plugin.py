"""A sink from another package (examples/idb-sink) runs as one more worker, found by its entry
point or by --sink module:Class, without any change to statspout."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import zmq
from support.processes import Process, program
from support.samples import make_stats
from support.waiting import wait_for

from statspout import bus, wire

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "idb-sink"


def fake_installed_distribution(site: Path) -> None:
    """What `pip install examples/idb-sink` would leave for importlib.metadata: the package's
    metadata with its entry point (the code itself comes from PYTHONPATH)."""
    info = site / "statspout_idb-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: statspout-idb\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[statspout.sinks]\nidb = idb_sink:IDBSink\n")


@pytest.mark.parametrize("how", ["entry point", "--sink module:Class"])
def test_a_sink_of_another_package_runs_as_a_worker(tmp_path, how):
    fake_installed_distribution(tmp_path / "site")
    store = tmp_path / "stats.jsonl"
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(EXAMPLE)]),
           "STATSPOUT_IDB_ADDRESS": str(store)}
    context = zmq.Context()
    publisher = context.socket(zmq.XPUB)
    publisher.bind("tcp://127.0.0.1:*")
    endpoint = publisher.getsockopt_string(zmq.LAST_ENDPOINT)
    which = ["idb"] if how == "entry point" else ["--sink", "idb_sink:IDBSink"]
    worker = Process([program("statspout-sink"), *which, "--connect", endpoint], env=env)
    try:
        assert publisher.poll(15_000), f"the worker never subscribed: {worker.log()}"
        publisher.recv()
        sample = make_stats(labels={"state": "serving"})
        publisher.send_multipart([bus.topic_for("all"), bus.pack_sequence(1), wire.encode(sample)])
        wait_for(lambda: store.exists() and store.read_text().endswith("\n"), 10,
                 "the record in the IDB file")
    finally:
        assert worker.stop() == 0
        publisher.close()
        context.term()
    assert json.loads(store.read_text()) == {
        "name": "web", "timestamp": sample.timestamp, "cpu_usage": 12.5,
        "mem_usage": 52_428_800, "tx_bytes": 1200, "rx_bytes": 3400, "state": "serving",
    }
    assert "sink idb stopped" in worker.log()


def test_the_help_lists_a_plugin_and_its_options(tmp_path):
    fake_installed_distribution(tmp_path / "site")
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(EXAMPLE)])}
    listing = subprocess.run([program("statspout-sink"), "--help"], env=env,
                             capture_output=True, text=True, check=True)
    assert "idb, influxdb" in " ".join(listing.stdout.split())
    own = subprocess.run([program("statspout-sink"), "idb", "--help"], env=env,
                         capture_output=True, text=True, check=True)
    assert "--idb.address" in own.stdout and "STATSPOUT_IDB_ADDRESS" in own.stdout
