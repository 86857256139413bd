"""Restarts under load, with exact accounting: a router or a sink killed with SIGKILL and
started again loses no sample at the sinks, and their counters say so.

Real router and sink processes, a real influxd and a MongoDB wire server (SecantusDB); the
collector is synthetic (the real publishing
socket, numbered samples at ~150/s, no Docker), so that every sample can be accounted for: each
one the collector's link took is in the stdout sink's output, in InfluxDB and in MongoDB exactly
once, or counted lost. The table each test prints is the figure docs/reliability.md quotes.
"""

from __future__ import annotations

import collections
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.influxd import InfluxServer, running_influxd
from support.mongo import MongoServer, running_mongo
from support.ports import free_port
from support.processes import Process, program
from support.samples import make_series_stats
from support.synthetic_collector import (
    COUNTED_NAME,
    WARMUP_NAME,
    SyntheticCollector,
    seq_of_cpu,
)
from support.waiting import wait_for

from statspout.router import status

pytestmark = [pytest.mark.e2e]

DATABASE = "restarts"
LOAD_BEFORE_KILL_S = 4.0
DOWN_S = 5.0
LOAD_AFTER_RESTART_S = 5.0


@dataclass
class Endpoints:
    listen: str
    publish: str
    replay: str
    control: str


@pytest.fixture
def bus_endpoints(tmp_path: Path) -> Endpoints:
    return Endpoints(f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}",
                     f"tcp://127.0.0.1:{free_port()}", f"ipc://{tmp_path}/router.ctl")


@pytest.fixture
def influx() -> Iterator[InfluxServer]:
    with running_influxd() as server:
        server.create_database(DATABASE)
        yield server


@pytest.fixture
def mongo() -> Iterator[MongoServer]:
    with running_mongo() as server:
        yield server


class Rig:
    """Router, JSON stdout, InfluxDB and MongoDB sinks, each restartable, and the collector."""

    def __init__(self, ends: Endpoints, influx: InfluxServer, mongo: MongoServer,
                 state_dir: Path, router_args: tuple[str, ...] = ()) -> None:
        self.ends = ends
        self.router_args = router_args
        self.influx = influx
        self.mongo = mongo
        self.state_dir = state_dir
        self.stdout_runs: list[Process] = []  # every run of the stdout sink, in order
        self.influx_runs: list[Process] = []
        self.mongo_runs: list[Process] = []
        self.router_runs: list[Process] = []
        self.start_router()
        self.start_stdout_sink()
        self.start_influx_sink()
        self.start_mongo_sink()
        self.collector = SyntheticCollector(ends.listen)
        self.first_after_kill = 0  # the collector's next seq when the router was killed

    def start_router(self) -> None:
        e = self.ends
        self.router_runs.append(Process([
            program("statspout-router"), "--listen", e.listen, "--publish", e.publish,
            "--replay", e.replay, "--control", e.control, "--report-interval", "1",
            *self.router_args,
        ]))

    def _sink(self, *args: str) -> Process:
        e = self.ends
        return Process([program("statspout-sink"), *args, "--connect", e.publish,
                        "--replay", e.replay, "--state-dir", str(self.state_dir),
                        "--report-interval", "1"])

    def start_stdout_sink(self) -> None:
        self.stdout_runs.append(self._sink("stdout", "--stdout.format", "json"))

    def start_influx_sink(self) -> None:
        self.influx_runs.append(self._sink(
            "influxdb", "--influxdb.api", "v1", "--influxdb.url", self.influx.url,
            "--influxdb.database", DATABASE, "--influxdb.flush-interval", "0.2"))

    def start_mongo_sink(self) -> None:
        self.mongo_runs.append(self._sink(
            "mongodb", "--mongodb.uri", self.mongo.uri, "--mongodb.database", DATABASE,
            "--mongodb.flush-interval", "0.2"))

    @property
    def sink_runs(self) -> list[Process]:
        return [*self.stdout_runs, *self.influx_runs, *self.mongo_runs]

    # What arrived where.

    def stdout_seqs(self, name: str = COUNTED_NAME) -> list[int]:
        return [m["seq"] for run in self.stdout_runs for m in run.json_lines()
                if m.get("kind") == "stats" and m["name"] == name]

    def influx_seqs(self, name: str = COUNTED_NAME) -> list[int]:
        rows = self.influx.rows(
            f"SELECT usage_total FROM docker_container_cpu WHERE container_name = '{name}'",
            DATABASE)
        return [seq_of_cpu(row["usage_total"]) for row in rows]

    def mongo_seqs(self, name: str = COUNTED_NAME) -> list[int]:
        with self.mongo.client() as client:
            return [d["seq"] for d in client[DATABASE]["stats"].find({"name": name}, {"seq": 1})]

    def warm_up(self) -> None:
        """Until both sinks show warm-up samples: everything is connected."""
        wait_for(lambda: status_of(self.ends.control), 20, "the router's status")
        self.collector.start()
        wait_for(lambda: self.stdout_seqs(WARMUP_NAME), 30, "warm-up samples at stdout")
        wait_for(lambda: self.influx_seqs(WARMUP_NAME), 30, "warm-up samples in InfluxDB")
        wait_for(lambda: self.mongo_seqs(WARMUP_NAME), 30, "warm-up samples in MongoDB")
        self.collector.count_from_now()

    def settle(self) -> None:
        """End the load; wait until every counted sample is at every sink (or the deadline)."""
        self.collector.stop_counting()
        sent = set(self.collector.sent)

        def complete() -> bool:
            return all(sent <= set(seqs()) for seqs in
                       (self.stdout_seqs, self.influx_seqs, self.mongo_seqs))

        try:
            wait_for(complete, 30, "every counted sample at every sink", poll=0.5)
        except AssertionError:
            pass  # the accounting below says what is missing

    def stop(self) -> None:
        self.collector.close()
        for process in [*self.sink_runs, *self.router_runs]:
            process.stop()


def status_of(control: str) -> dict | None:
    try:
        return status.query(control, timeout_ms=500)
    except TimeoutError:
        return None


def kill(process: Process) -> None:
    process.popen.send_signal(signal.SIGKILL)
    process.popen.wait(10)


_REPORT = re.compile(r"statspout\.sink: (\w+): (.*)$")


def final_counters(process: Process) -> dict[str, int]:
    """The counters of a sink process's last report line."""
    for line in reversed(process.stderr):
        found = _REPORT.search(line)
        if found and "received=" in found.group(2):
            return {k: int(v) for k, v in (kv.split("=") for kv in found.group(2).split())}
    return {}


def summed(runs: list[Process], counter: str) -> int:
    return sum(final_counters(run).get(counter, 0) for run in runs)


def accounting(rig: Rig) -> dict[str, dict[str, int]]:
    """Per sink: sent, delivered once, delivered twice or more, missing, counted lost."""
    sent = rig.collector.sent
    table = {}
    for name, seqs, runs in (("stdout", rig.stdout_seqs(), rig.stdout_runs),
                             ("influxdb", rig.influx_seqs(), rig.influx_runs),
                             ("mongodb", rig.mongo_seqs(), rig.mongo_runs)):
        copies = collections.Counter(seqs)
        table[name] = {
            "sent": len(sent),
            "collector_dropped": len(rig.collector.dropped),
            "delivered": sum(1 for seq in sent if copies[seq]),
            "extra_copies": sum(copies[seq] - 1 for seq in sent if copies[seq] > 1),
            "missing": sum(1 for seq in sent if not copies[seq]),
            "resent": rig.collector.publisher.counts.resent,
            "replayed": summed(runs, "replayed"),
            "duplicates": summed(runs, "duplicates"),
            "lost_beyond_replay": summed(runs, "lost_beyond_replay"),
            "gaps": summed(runs, "gaps"),
        }
    return table


def print_table(title: str, table: dict[str, dict[str, int]]) -> None:
    columns = list(next(iter(table.values())))
    print(f"\n{title}")
    print(f"{'sink':<10}" + "".join(f"{c:>20}" for c in columns))
    for sink, figures in table.items():
        print(f"{sink:<10}" + "".join(f"{figures[c]:>20}" for c in columns))


@pytest.fixture
def rig(request: pytest.FixtureRequest, bus_endpoints: Endpoints, influx: InfluxServer,
        mongo: MongoServer, tmp_path: Path) -> Iterator[Rig]:
    marker = request.node.get_closest_marker("router_args")
    made = Rig(bus_endpoints, influx, mongo, tmp_path / "state", marker.args if marker else ())
    try:
        yield made
    finally:
        made.stop()


def test_router_killed_and_restarted_under_load_loses_nothing(rig: Rig):
    rig.warm_up()
    time.sleep(LOAD_BEFORE_KILL_S)  # load runs meanwhile: this is the test's timeline
    kill(rig.router_runs[-1])
    rig.first_after_kill = rig.collector.seq + 1
    time.sleep(DOWN_S)
    rig.start_router()
    wait_for(lambda: (s := status_of(rig.ends.control)) and s["start"]["open"], 20,
             "the new router to release its input")
    time.sleep(LOAD_AFTER_RESTART_S)
    rig.settle()
    router_status = status_of(rig.ends.control)
    for run in rig.sink_runs:
        run.stop()
    table = accounting(rig)
    print_table("router kill -9, restarted after 5 s, load ~150 samples/s", table)
    print("new router:", router_status["start"], router_status["replay"]["routes"])

    print("router's count of the collector:", router_status["hosts"])

    assert router_status["start"]["opened_by"] == "a subscription"
    # What was in flight at the kill (taken from the socket by the dying router, or in its
    # buffers) dies with it; the collector sent its last seconds again to the new router, and
    # the sinks dropped what they had had already (duplicates): nothing is missing, nothing
    # is there twice.
    assert table["stdout"]["resent"] > LOAD_BEFORE_KILL_S * 100
    for figures in table.values():
        assert figures["sent"] > 1000 and figures["collector_dropped"] == 0
        assert figures["missing"] == 0 and figures["extra_copies"] == 0
        assert figures["duplicates"] > 0
        assert figures["lost_beyond_replay"] == 0 and figures["gaps"] == 0
    host = router_status["hosts"][make_series_stats(0).host]
    # The resend is not a restart of the collector's numbering, and leaves no hole in it.
    assert host["restarts"] == 0 and host["gaps"] == 0 and host["resent"] > 0


def test_sinks_killed_and_restarted_under_load_lose_nothing(rig: Rig):
    rig.warm_up()
    time.sleep(LOAD_BEFORE_KILL_S)
    for runs in (rig.stdout_runs, rig.influx_runs, rig.mongo_runs):
        kill(runs[-1])
    time.sleep(DOWN_S + 1)
    rig.start_stdout_sink()
    rig.start_influx_sink()
    rig.start_mongo_sink()
    time.sleep(LOAD_AFTER_RESTART_S)
    rig.settle()
    router_status = status_of(rig.ends.control)
    for run in rig.sink_runs:
        run.stop()
    table = accounting(rig)
    print_table("stdout, influxdb and mongodb sinks kill -9, restarted after 6 s, load ~150 "
                "samples/s", table)
    print("router replay:", router_status["replay"])

    for figures in table.values():
        assert figures["sent"] > 1000 and figures["collector_dropped"] == 0
        assert figures["missing"] == 0
        assert figures["replayed"] >= DOWN_S * 100  # what passed while they were down
        assert figures["lost_beyond_replay"] == 0 and figures["gaps"] == 0
    # InfluxDB points are keyed by series and time, MongoDB documents by a deterministic _id:
    # a replayed sample is stored once.
    assert table["influxdb"]["extra_copies"] == 0 and table["mongodb"]["extra_copies"] == 0
    # stdout cannot take back a line: what it printed after its last checkpoint (written right
    # after each flush) is printed again after a SIGKILL. The window is the checkpoint write.
    assert table["stdout"]["extra_copies"] <= 200


@pytest.mark.router_args("--replay-seconds", "2")
def test_beyond_the_replay_window_the_loss_is_counted_exactly(rig: Rig):
    rig.warm_up()
    time.sleep(2)
    kill(rig.stdout_runs[-1])
    time.sleep(DOWN_S)  # the router keeps 2 s: about 3 s of what passes now is evicted
    rig.start_stdout_sink()
    time.sleep(3)
    rig.collector.stop_counting()
    sent = set(rig.collector.sent)
    wait_for(lambda: max(sent) in set(rig.stdout_seqs()), 30, "the last counted sample")
    router_status = status_of(rig.ends.control)
    for run in rig.sink_runs:
        run.stop()
    table = accounting(rig)
    print_table("stdout sink kill -9 for 5 s, router replay window 2 s", table)
    print("router replay:", router_status["replay"]["routes"])

    stdout = table["stdout"]
    assert stdout["missing"] > 300  # the window really was too short
    assert stdout["lost_beyond_replay"] == stdout["missing"]  # and every one is counted
    assert stdout["replayed"] > 0  # what was still held came back
    assert router_status["replay"]["routes"]["all"]["evicted"] > 0
    assert table["influxdb"]["missing"] == 0 and table["mongodb"]["missing"] == 0
