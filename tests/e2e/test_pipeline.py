"""End to end through the real processes (collector → router → stdout sink) and real
containers: the figures agree with what the containers do, and discovery follows their lives."""

from __future__ import annotations

import statistics

import pytest
from support.processes import Pipeline, Process, program
from support.waiting import passes_within, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

MiB = 1024 * 1024
SPIN = "while :; do :; done"


def recent_cpu(pipeline: Pipeline, name: str, count: int = 3) -> float:
    values = [s["cpu_percent"] for s in pipeline.samples(name) if s["cpu_percent"] is not None]
    return statistics.median(values[-count:])


@pytest.mark.parametrize("source", ["api", "cgroup"])
def test_figures_match_what_the_containers_do(make_container, endpoints, run_id, source):
    make_container(SPIN, name=f"spin-{run_id}")
    make_container(SPIN, name=f"half-{run_id}", nano_cpus=500_000_000)  # --cpus 0.5
    make_container(
        "dd if=/dev/zero of=/mem/block bs=1M count=64 && sleep 3600",
        name=f"mem-{run_id}", tmpfs={"/mem": "size=100m"},
    )
    make_container("sleep 3600", name=f"ignored-{run_id}", labels={"statspout.ignore": "true"})
    with Pipeline(endpoints, run_id, collector_args=["--source", source]) as pipeline:
        wait_for(lambda: all(
            len([s for s in pipeline.samples(n) if s["cpu_percent"] is not None]) >= 4
            for n in (f"spin-{run_id}", f"half-{run_id}", f"mem-{run_id}")
        ), 30, "four samples with CPU figures of every container")

        def cpu_as_the_containers_use_it() -> None:
            assert recent_cpu(pipeline, f"spin-{run_id}") == pytest.approx(100, abs=15)
            assert recent_cpu(pipeline, f"half-{run_id}") == pytest.approx(50, abs=10)

        # On a machine busy with other work a spinning container gets less than a core for a
        # while, and reads so: later samples are looked at until the deadline.
        passes_within(cpu_as_the_containers_use_it, 30, poll=1.0)
        memory = pipeline.samples(f"mem-{run_id}")[-1]
        assert memory["mem_usage"] == pytest.approx(64 * MiB, abs=8 * MiB)
        assert memory["mem_percent"] == pytest.approx(
            memory["mem_usage"] / memory["mem_limit"] * 100)
        assert not pipeline.samples(f"ignored-{run_id}"), "statspout.ignore=true was routed"

        sample = pipeline.samples(f"spin-{run_id}")[-1]
        assert sample["host"] == "e2e-host" and sample["image"] == "statspout-test/busybox:1"
        assert sample["labels"]["statspout.test"] == run_id
        assert sample["online_cpus"] >= 1 and sample["pids"] >= 1
        assert isinstance(sample["cpu_usage_ns"], int) and sample["cpu_usage_ns"] > 0
        for field in ("rx_bytes", "tx_bytes", "rx_packets", "blk_read_bytes", "blk_write_bytes"):
            assert isinstance(sample[field], int), field
    # The collector numbers every message; the ignored container's samples leave holes in that
    # numbering at the sink. The router's own numbering of the route has none: nothing was lost.
    final_report = [line for line in pipeline.sink.stderr if "received=" in line][-1]
    assert "gaps=0" in final_report and "malformed=0" in final_report


def test_containers_started_stopped_and_renamed_later_are_followed(
    make_container, endpoints, run_id
):
    interval_ns = 1_000_000_000
    with Pipeline(endpoints, run_id) as pipeline:
        wait_for(lambda: "running containers" in pipeline.collector.log(), 15, "the listing")
        late = make_container("sleep 3600", name=f"late-{run_id}")
        started = wait_for(lambda: pipeline.events(f"late-{run_id}"), 10, "the start event")[0]
        assert started["action"] == "start" and started["id"] == late.id
        first = wait_for(lambda: pipeline.samples(f"late-{run_id}"), 10, "a sample of it")[0]
        assert first["timestamp"] - started["timestamp"] <= 2 * interval_ns

        late.rename(f"renamed-{run_id}")
        rename = wait_for(lambda: pipeline.events(f"renamed-{run_id}"), 10, "the rename event")
        assert rename[0]["action"] == "rename" and rename[0]["old_name"] == f"late-{run_id}"
        wait_for(lambda: pipeline.samples(f"renamed-{run_id}"), 10, "samples under the new name")

        late.stop(timeout=0)
        stop = wait_for(
            lambda: [e for e in pipeline.events(f"renamed-{run_id}") if e["action"] == "stop"],
            15, "the stop event")[0]
        # Let two more cycles pass (a witness container is sampled twice after the stop): no
        # sample of the stopped container was read after it stopped.
        make_container("sleep 3600", name=f"witness-{run_id}")
        wait_for(lambda: len(pipeline.samples(f"witness-{run_id}")) >= 2, 15,
                 "two samples of a witness container")
        assert all(s["timestamp"] <= stop["timestamp"]
                   for s in pipeline.samples(f"renamed-{run_id}"))

        # The destroy event carries the container's labels, so it passes the router's label
        # filter like the container's samples did.
        late.remove()
        destroyed = wait_for(
            lambda: [e for e in pipeline.events(f"renamed-{run_id}") if e["action"] == "destroy"],
            15, "the destroy event")[0]
        assert destroyed["labels"]["statspout.test"] == run_id


def test_a_sink_started_later_receives_data_within_one_interval(make_container, endpoints, run_id):
    make_container("sleep 3600", name=f"steady-{run_id}")
    with Pipeline(endpoints, run_id) as pipeline:
        wait_for(lambda: len(pipeline.samples()) >= 2, 20, "samples flowing")
        late = Process([program("statspout-sink"), "stdout", "--stdout.format", "json",
                        "--connect", endpoints[1]])
        try:
            wait_for(lambda: "subscribed" in late.log(), 10, "the late sink to subscribe")
            at_join = pipeline.samples()[-1]["timestamp"]
            first = wait_for(late.json_lines, 10, "the late sink's first message")[0]
        finally:
            late.stop()
    # One container, one sample per interval: the late sink's first sample is at most the
    # one after next of what the first sink had when the late one subscribed. (By time, not
    # by seq: state and engine messages take numbers of their own between samples.)
    assert first["timestamp"] <= at_join + 2 * 1_000_000_000
