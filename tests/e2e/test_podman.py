"""The collector, unchanged, against Podman's Docker-compatible API (Debian's podman 4.3,
``podman system service`` on a socket of the test's own): a busy container reads one core on
both sources, where the API's system_cpu_usage would have said 150–180 %, and the state and
engine messages say Podman."""

from __future__ import annotations

import os
import statistics
import time
import uuid

import pytest
from support.podman import podman_available, running_podman
from support.processes import Pipeline
from support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not podman_available(),
                                                  reason="podman is not installed")]

SPIN = "while :; do :; done"


def raw_cpu(podman, name: str) -> tuple[int, int]:
    """(now in ns, the container's cpuacct.usage in ns), from its v1 cgroup."""
    pid = podman.podman("inspect", "--format", "{{.State.Pid}}", name)
    with open(f"/proc/{pid}/cgroup") as cgroups:
        path = next(line.split(":", 2)[2].strip() for line in cgroups
                    if line.split(":")[1] in ("cpuacct", "cpu,cpuacct"))
    controller = "cpuacct" if os.path.isdir("/sys/fs/cgroup/cpuacct") else "cpu,cpuacct"
    now = time.time_ns()
    with open(f"/sys/fs/cgroup/{controller}{path}/cpuacct.usage") as usage:
        return now, int(usage.read())


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    with running_podman(tmp_path_factory.mktemp("podman")) as engine:
        yield engine


@pytest.mark.parametrize("source", ["api", "cgroup"])
def test_busy_container_under_podman_reads_one_core(podman, endpoints, source):
    run_id = uuid.uuid4().hex[:10]
    name = f"podman-spin-{run_id}"
    podman.podman("run", "-d", "--name", name, "--network", "none", "--label",
                  f"statspout.test={run_id}", "statspout-test/busybox:1", "sh", "-c", SPIN)
    try:
        with Pipeline(endpoints, run_id, collector_args=["--source", source],
                      collector_env=podman.env) as pipeline:
            wait_for(lambda: [s for s in pipeline.samples(name) if s["cpu_percent"]], 40,
                     "a sample with a CPU figure from Podman")
            start = raw_cpu(podman, name)
            seen = len(pipeline.samples(name))
            wait_for(lambda: len(pipeline.samples(name)) >= seen + 3, 20, "three more samples")
            end = raw_cpu(podman, name)
            samples = pipeline.samples(name)[seen:]
            # The container's own CPU time over the same seconds, from its cgroup file: what
            # it really got, on a machine other tests may load.
            got = (end[1] - start[1]) / (end[0] - start[0]) * 100
            percent = statistics.mean(s["cpu_percent"] for s in samples)
            print(f"podman, {source} source: {percent:.1f} % by the collector, "
                  f"{got:.1f} % by its cgroup file")
            assert percent == pytest.approx(got, abs=15), (percent, got)
            if got >= 90:  # a core to itself: the figure reads one core, not 150-180 %
                assert percent == pytest.approx(100, abs=15)
            sample = samples[-1]
            assert sample["mem_cgroup_usage"] > 0 and sample["pids"] >= 1
            if source == "api":
                # Podman sends no memory.stat: null, never a made-up 0
                assert sample["mem_stat"] is None and sample["mem_cache"] is None
            else:
                assert sample["mem_stat"] is not None
            log = pipeline.collector.log()
            expected = "figures from cgroup files" if source == "cgroup" else "stats API"
            assert expected in log, log
    finally:
        podman.podman("rm", "--force", "--time", "0", name)
