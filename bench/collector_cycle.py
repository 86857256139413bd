"""One full collection cycle over N sleeping containers: our API path, our cgroup fast path,
``docker stats --no-stream`` for the same containers, and the raw floor (the same files read
the same way in a tight loop, no parsing). Wall time per cycle, median of several.

    .venv/bin/python bench/collector_cycle.py [-n 50] [--repeat 7] [--json PATH]

The script creates its N containers (``--network none``, labelled ``statspout.test=bench``)
and removes them at the end, on Ctrl-C and on failure too. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from statspout.collector.api_source import ApiSource
from statspout.collector.cgroup_files import HeldFiles, read_text
from statspout.collector.cgroup_hierarchy import CgroupHierarchies, ContainerFiles, locate_files
from statspout.collector.cgroup_source import DEFAULT_CGROUP_ROOT, DEFAULT_PROC_ROOT, CgroupSource
from statspout.collector.discovery import ContainerInfo, container_info

IMAGE = "statspout-test/busybox:1"
LABEL = "statspout.test"
LABEL_VALUE = "bench"
MAX_CONTAINERS = 300
# A container left behind by a killed run still ends by itself.
SLEEP_S = 1800
# As the collector runs by default (--max-concurrency).
COLLECTOR_CONCURRENCY = 64
RESULTS = Path(__file__).resolve().parent / "results"


def terminate_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so that the containers are removed."""
    def raise_interrupt(*_: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, raise_interrupt)


class SleepingContainers:
    """Up to MAX_CONTAINERS sleeping busybox containers of one run; ``grow`` adds more."""

    def __init__(self, client: docker.DockerClient) -> None:
        self._client = client
        self.run_id = uuid.uuid4().hex[:8]
        self.infos: list[ContainerInfo] = []

    def grow(self, count: int) -> list[ContainerInfo]:
        if count > MAX_CONTAINERS:
            raise ValueError(f"{count} containers: at most {MAX_CONTAINERS}")
        missing = range(len(self.infos), count)

        def start(number: int) -> ContainerInfo:
            container = self._client.containers.run(
                IMAGE, ["sleep", str(SLEEP_S)], detach=True, network_mode="none",
                labels={LABEL: LABEL_VALUE, "statspout.bench.run": self.run_id},
                name=f"statspout-bench-{self.run_id}-{number}",
            )
            if container.id is None:  # the stubs allow it; a started container has an id
                raise RuntimeError("docker run returned a container without an id")
            return container_info(self._client.api.inspect_container(container.id))

        with ThreadPoolExecutor(8) as pool:
            self.infos.extend(pool.map(start, missing))
        return self.infos[:count]

    def remove_all(self) -> None:
        remove_labelled(self._client)
        self.infos.clear()


def remove_labelled(client: docker.DockerClient) -> None:
    """Every benchmark container, of this run or of an earlier one that was killed."""
    found = client.containers.list(all=True, filters={"label": f"{LABEL}={LABEL_VALUE}"})

    def remove(container: Container) -> None:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(remove, found))


@contextmanager
def sleeping_containers(client: docker.DockerClient) -> Iterator[SleepingContainers]:
    remove_labelled(client)
    containers = SleepingContainers(client)
    try:
        yield containers
    finally:
        containers.remove_all()


def cgroup_files_of(files: ContainerFiles) -> list[str]:
    """Every file a reading of this container opens (the raw floor reads just these)."""
    paths = [files.cpu, files.memory_stat, files.memory_usage, files.memory_limit,
             files.net_dev]
    paths += [p for p in (files.cpuacct_stat, files.cpu_stat_v1, files.max_usage, files.failcnt,
                          files.oom, files.swap, files.blkio, files.pids) if p is not None]
    return paths


def files_read_for(client: docker.DockerClient, infos: list[ContainerInfo]) -> list[str]:
    """The files the cgroup source opens for these running containers, found as it finds them."""
    hierarchies = CgroupHierarchies(DEFAULT_CGROUP_ROOT)
    paths = []
    for info in infos:
        pid = client.api.inspect_container(info.id)["State"]["Pid"]
        files = locate_files(hierarchies, DEFAULT_PROC_ROOT, info.id, pid)
        if files is None:
            raise RuntimeError(f"benchmark container {info.name} is not running")
        paths += cgroup_files_of(files)
    return paths


def median_wall_time(cycle: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        cycle()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def measure_cycles(client: docker.DockerClient, infos: list[ContainerInfo],
                   repeat: int) -> dict[str, dict]:
    """Each way of reading every container once, timed ``repeat`` times."""
    results: dict[str, dict] = {}
    with ThreadPoolExecutor(COLLECTOR_CONCURRENCY, thread_name_prefix="sample") as pool:
        api = ApiSource(client)

        def api_cycle() -> None:
            readings = list(pool.map(api.read, infos))
            if any(reading is None for reading in readings):
                raise RuntimeError("a benchmark container vanished during the API cycle")

        fast = CgroupSource(client)
        if fast.unreadable_reason() is None:
            list(pool.map(fast.read, infos))  # learns every pid (one inspect each), not timed

            def fast_cycle() -> None:
                # As the collector does for a source that is not concurrent: one pool task
                # reads the whole cycle in turn.
                readings = pool.submit(lambda: [fast.read(info) for info in infos]).result()
                if any(reading is None for reading in readings):
                    raise RuntimeError("a benchmark container vanished during the fast cycle")

            median, runs = median_wall_time(fast_cycle, repeat)
            results["fast path (cgroup files)"] = {"median_s": median, "runs_s": runs}

            paths = files_read_for(client, infos)
            # as the source reads them: cgroup files held open, /proc/<pid>/net/dev opened
            held = HeldFiles()
            held_paths = [path for path in paths if not path.startswith(DEFAULT_PROC_ROOT)]
            opened_paths = [path for path in paths if path.startswith(DEFAULT_PROC_ROOT)]

            def floor_cycle() -> None:
                for path in held_paths:
                    held.read(path)
                for path in opened_paths:
                    read_text(path)

            median, runs = median_wall_time(floor_cycle, repeat)
            held.close()
            results["raw floor (same files, no parsing)"] = {
                "median_s": median, "runs_s": runs, "files": len(paths)
            }
        median, runs = median_wall_time(api_cycle, repeat)
        results["API path (one-shot, concurrent)"] = {"median_s": median, "runs_s": runs}

    ids = [info.id for info in infos]

    def docker_stats() -> None:
        subprocess.run(["docker", "stats", "--no-stream", *ids], check=True,
                       stdout=subprocess.DEVNULL, timeout=120)

    median, runs = median_wall_time(docker_stats, repeat)
    results["docker stats --no-stream"] = {"median_s": median, "runs_s": runs}
    return results


def cycle_table(results: dict[str, dict], count: int) -> str:
    baseline = results["docker stats --no-stream"]["median_s"]
    lines = [f"Full cycle over {count} sleeping containers (median of "
             f"{len(results[next(iter(results))]['runs_s'])})",
             f"{'':38} {'wall time':>12} {'vs docker stats':>16}"]
    for name, figures in results.items():
        median = figures["median_s"]
        lines.append(f"{name:38} {format_seconds(median):>12} {median / baseline:>15.4f}x")
    return "\n".join(lines)


def format_seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.3f} s"


def machine() -> dict[str, object]:
    uname = os.uname()
    model = ""
    for line in read_text("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    with open("/proc/meminfo") as meminfo:
        mem_kib = int(meminfo.readline().split()[1])
    return {"kernel": uname.release, "cpus": os.cpu_count(), "cpu_model": model,
            "memory_gib": round(mem_kib / 1024 / 1024, 1), "python": sys.version.split()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--containers", type=int, default=50,
                        help=f"sleeping containers (1..{MAX_CONTAINERS}, default 50)")
    parser.add_argument("--repeat", type=int, default=7, help="cycles timed per way (min 5)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if not 1 <= args.containers <= MAX_CONTAINERS or args.repeat < 5:
        parser.error(f"-n between 1 and {MAX_CONTAINERS}, --repeat at least 5")
    terminate_on_sigterm()
    client = docker.from_env(max_pool_size=COLLECTOR_CONCURRENCY, timeout=60)
    try:
        with sleeping_containers(client) as containers:
            print(f"starting {args.containers} containers ...", file=sys.stderr)
            infos = containers.grow(args.containers)
            results = measure_cycles(client, infos, args.repeat)
    except KeyboardInterrupt:
        print("interrupted; containers removed", file=sys.stderr)
        return 130
    finally:
        client.close()
    print(cycle_table(results, args.containers))
    api = results["API path (one-shot, concurrent)"]["median_s"]
    stats = results["docker stats --no-stream"]["median_s"]
    print(f"\nratio API path / docker stats --no-stream: {api / stats:.3f} "
          f"(docker stats is {stats / api:.2f}x slower)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine(), "containers": args.containers,
                                         "cycle": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
