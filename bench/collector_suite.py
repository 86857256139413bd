"""The collector's benchmark suite, one command, every figure beside its baseline:

1. a full cycle over N sleeping containers (API path, fast path, ``docker stats --no-stream``,
   raw floor), median of several;
2. CPU seconds per 1000 samples of the real ``statspout-collector`` process, and of dockerd +
   containerd + the shims together, for both paths and for ``docker stats --no-stream`` once a
   second, over a fixed window at a 1 s interval;
3. sustained scale: the largest N of (50, 100, 200) at which every container is sampled in
   every 1 s interval, and the collector's CPU share of one core there, for both paths;
4. the collector's peak RSS (VmHWM) at the largest N.

    .venv/bin/python bench/collector_suite.py [-n 50] [--window 20] [--scale 50,100,200]
                                              [--before DIR]

``--before DIR`` measures, in part 2 of the same run, the collector of another checkout of this
repository (e.g. ``git worktree add /tmp/before main``) beside this one, and prints the ratios
after / before of the collector's and Docker's CPU per 1000 samples.

Prints a table and writes JSON to bench/results/. The collector publishes to a SUB socket this
script binds on 127.0.0.1, which counts what arrives. Containers are created and removed here,
also on Ctrl-C and on failure. Docker is shared with whatever else runs on the host; its CPU
figures include that background, measured alone in the "idle" row.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import collector_cycle as cycle
import docker
import zmq

from statspout import wire
from statspout.collector.discovery import ContainerInfo

CLOCK_TICK = os.sysconf("SC_CLK_TCK")
DOCKER_PROCESSES = ("dockerd", "containerd", "containerd-shim")
INTERVAL_S = 1.0
# A container counts as sampled every interval when no two of its samples are further apart.
MAX_GAP_S = 1.5
WARMUP_LIMIT_S = 60.0


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of one process (all its threads); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def docker_pids() -> list[int]:
    """dockerd, containerd and every containerd-shim(-runc-v2) on the host."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as comm:
                name = comm.read().strip()
        except OSError:
            continue
        if name in DOCKER_PROCESSES:
            pids.append(int(entry))
    return pids


class DockerCpu:
    """CPU used by Docker's processes since construction, over those alive at both ends (a
    shim that exits meanwhile takes its seconds with it)."""

    def __init__(self) -> None:
        self._start = {pid: process_cpu_s(pid) for pid in docker_pids()}

    def used_s(self) -> float:
        total = 0.0
        for pid, start in self._start.items():
            end = process_cpu_s(pid)
            if start is not None and end is not None:
                total += end - start
        return total


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


@dataclass
class Window:
    """What one measured window saw."""

    seconds: float
    samples: int
    collector_cpu_s: float = 0.0
    docker_cpu_s: float = 0.0
    every_interval: bool = True
    worst_gap_s: float = 0.0
    peak_rss_kib: int = 0
    per_container: dict[str, int] = field(default_factory=dict)

    def per_1000(self, cpu_s: float) -> float | None:
        return cpu_s / self.samples * 1000 if self.samples else None


class Subscriber:
    """The SUB socket the collector publishes to; counts stats samples per container."""

    def __init__(self, context: zmq.Context) -> None:
        self.socket = context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, 0)
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"

    def drain(self, until: float, seen: dict[str, list[float]] | None) -> int:
        """Receive until the monotonic time ``until``; record receive times of each
        container's samples in ``seen``. Returns the number of samples."""
        count = 0
        while (left := until - time.monotonic()) > 0:
            if not self.socket.poll(int(left * 1000) + 1):
                continue
            while True:
                try:
                    payload = self.socket.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                for message in wire.decode_all(payload):
                    if isinstance(message, wire.ContainerStats):
                        count += 1
                        if seen is not None:
                            seen[message.id].append(time.monotonic())
        return count

    def close(self) -> None:
        self.socket.close()


def package_root(checkout: Path, into: Path) -> Path:
    """The ``statspout`` package of another checkout, laid out as the installed one is
    (collector/ as statspout/collector, …), under ``into``: put it first on PYTHONPATH."""
    package = into / "statspout"
    shutil.copytree(checkout / "statspout", package)
    for part in ("collector", "router", "sinks"):
        (package / part).symlink_to((checkout / part).resolve())
    return into


def run_collector(source: str, infos: list[ContainerInfo], subscriber: Subscriber,
                  window_s: float, log_path: Path, pythonpath: Path | None = None) -> Window:
    """The real collector process at a 1 s interval: wait until it samples all of ``infos``,
    then measure one window. ``pythonpath``: run another checkout's collector."""
    wanted = {info.id for info in infos}
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "statspout.collector.main", "--source", source,
             "--interval", str(INTERVAL_S), "--connect", subscriber.endpoint,
             "--log-level", "warning", "--report-interval", "3600"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    try:
        warm: dict[str, list[float]] = defaultdict(list)
        deadline = time.monotonic() + WARMUP_LIMIT_S
        while not wanted <= {cid for cid, times in warm.items() if len(times) >= 2}:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {source} collector did not sample every container; "
                                   f"see {log_path}")
            subscriber.drain(time.monotonic() + 0.5, warm)
        seen: dict[str, list[float]] = defaultdict(list)
        docker_cpu = DockerCpu()
        collector_start = process_cpu_s(process.pid) or 0.0
        start = time.monotonic()
        samples = subscriber.drain(start + window_s, seen)
        elapsed = time.monotonic() - start
        window = Window(
            seconds=elapsed, samples=samples,
            collector_cpu_s=(process_cpu_s(process.pid) or 0.0) - collector_start,
            docker_cpu_s=docker_cpu.used_s(),
            peak_rss_kib=peak_rss_kib(process.pid),
        )
        for cid in wanted:
            times = [start, *seen.get(cid, []), start + elapsed]
            gap = max(b - a for a, b in itertools.pairwise(times))
            window.worst_gap_s = max(window.worst_gap_s, gap)
            window.per_container[cid] = len(seen.get(cid, []))
        window.every_interval = window.worst_gap_s <= MAX_GAP_S
        return window
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def docker_stats_window(infos: list[ContainerInfo], window_s: float) -> Window:
    """``docker stats --no-stream`` for the same containers, started once a second (a new
    one when the previous has finished, if it takes longer)."""
    ids = [info.id for info in infos]
    docker_cpu = DockerCpu()
    children_start = os.times()
    start = time.monotonic()
    runs = 0
    while (now := time.monotonic()) < start + window_s:
        subprocess.run(["docker", "stats", "--no-stream", *ids], check=True,
                       stdout=subprocess.DEVNULL, timeout=120)
        runs += 1
        time.sleep(max(0.0, now + INTERVAL_S - time.monotonic()))
    children = os.times()
    return Window(
        seconds=time.monotonic() - start, samples=runs * len(ids),
        collector_cpu_s=(children.children_user - children_start.children_user
                         + children.children_system - children_start.children_system),
        docker_cpu_s=docker_cpu.used_s(),
    )


def idle_window(window_s: float) -> Window:
    docker_cpu = DockerCpu()
    time.sleep(window_s)
    return Window(seconds=window_s, samples=0, docker_cpu_s=docker_cpu.used_s())


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--containers", type=int, default=50,
                        help="containers for parts 1 and 2 (default 50)")
    parser.add_argument("--repeat", type=int, default=7, help="cycles timed per way (min 5)")
    parser.add_argument("--window", type=float, default=20.0,
                        help="seconds of each measured window in parts 2 and 3 (default 20)")
    parser.add_argument("--scale", default="50,100,200",
                        help="container counts tried in part 3 (default 50,100,200)")
    parser.add_argument("--before", type=Path,
                        help="another checkout whose collector part 2 measures beside this one")
    args = parser.parse_args(argv)
    scale = sorted(int(n) for n in args.scale.split(","))
    if args.repeat < 5 or not 5 <= args.window <= 300 or not (
            1 <= args.containers <= cycle.MAX_CONTAINERS and scale
            and 1 <= scale[0] and scale[-1] <= cycle.MAX_CONTAINERS):
        parser.error(f"--repeat ≥ 5, --window in 5..300, counts in 1..{cycle.MAX_CONTAINERS}")
    cycle.terminate_on_sigterm()
    cycle.RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    log_path = cycle.RESULTS / f"suite-{stamp}-collector.log"
    report: dict[str, object] = {"machine": cycle.machine(), "containers": args.containers,
                                 "window_s": args.window, "interval_s": INTERVAL_S}
    client = docker.from_env(max_pool_size=cycle.COLLECTOR_CONCURRENCY, timeout=60)
    context = zmq.Context()
    subscriber = Subscriber(context)
    try:
        with cycle.sleeping_containers(client) as containers:
            say(f"1. cycle over {args.containers} containers")
            infos = containers.grow(args.containers)
            report["cycle"] = cycle.measure_cycles(client, infos, args.repeat)

            say(f"2. CPU per 1000 samples, {args.window:g} s windows")
            cost = {"idle (nothing sampling)": idle_window(args.window)}
            with tempfile.TemporaryDirectory() as tmp:
                before = package_root(args.before, Path(tmp)) if args.before else None
                for source, path in (("api", "API path"), ("cgroup", "fast path")):
                    if before is not None:  # before and after one after the other
                        cost[f"collector, {path}, before"] = run_collector(
                            source, infos, subscriber, args.window, log_path, before)
                    cost[f"collector, {path}"] = run_collector(
                        source, infos, subscriber, args.window, log_path)
            cost["docker stats --no-stream, 1/s"] = docker_stats_window(infos, args.window)
            report["cost"] = {name: vars(w) | {"per_container": None} for name, w in cost.items()}

            say(f"3. sustained scale at {INTERVAL_S:g} s: {scale}")
            scaled: dict[str, dict[int, Window]] = {"api": {}, "cgroup": {}}
            for count in scale:
                infos = containers.grow(count)
                for source in scaled:
                    say(f"   {count} containers, {source}")
                    try:
                        scaled[source][count] = run_collector(source, infos, subscriber,
                                                              args.window, log_path)
                    except RuntimeError as exc:
                        say(f"   {exc}")
                        scaled[source][count] = Window(seconds=0, samples=0,
                                                       every_interval=False)
            report["scale"] = {source: {count: vars(w) | {"per_container": None}
                                        for count, w in windows.items()}
                               for source, windows in scaled.items()}
    except KeyboardInterrupt:
        say("interrupted; containers removed")
        return 130
    finally:
        subscriber.close()
        context.term()
        client.close()

    print(render(report, cost, scaled, args))
    out = cycle.RESULTS / f"suite-{stamp}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nJSON: {out}\ncollector logs: {log_path}")
    return 0


def render(report: dict, cost: dict[str, Window], scaled: dict[str, dict[int, Window]],
           args: argparse.Namespace) -> str:
    machine = report["machine"]
    lines = [f"Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), "
             f"{machine['memory_gib']} GiB, kernel {machine['kernel']}, "
             f"Python {machine['python']}", ""]
    lines.append(cycle.cycle_table(report["cycle"], args.containers))
    lines += ["", f"CPU seconds per 1000 samples ({args.containers} containers, "
              f"{args.window:g} s window, {INTERVAL_S:g} s interval)",
              f"{'':32} {'samples':>8} {'sampler CPU s':>14} {'per 1000':>9} "
              f"{'docker CPU s':>13} {'per 1000':>9}"]
    for name, window in cost.items():
        lines.append(
            f"{name:32} {window.samples:>8} {fmt(window.collector_cpu_s):>14} "
            f"{fmt(window.per_1000(window.collector_cpu_s)):>9} "
            f"{fmt(window.docker_cpu_s):>13} {fmt(window.per_1000(window.docker_cpu_s)):>9}")
    lines.append("(docker = dockerd + containerd + shims, whatever asked them; for docker stats"
                 " the sampler is the docker CLI)")
    for path in ("API path", "fast path"):
        before, after = cost.get(f"collector, {path}, before"), cost[f"collector, {path}"]
        if before is None:
            continue
        ratios = []
        for what in ("collector_cpu_s", "docker_cpu_s"):
            old, new = before.per_1000(getattr(before, what)), after.per_1000(getattr(after, what))
            ratios.append(fmt(new / old if old and new is not None else None, 2))
        lines.append(f"{path}: after / before per 1000 samples: collector {ratios[0]}, "
                     f"docker {ratios[1]}")
    lines += ["", f"Sustained scale at {INTERVAL_S:g} s (sampled every interval: no gap over "
              f"{MAX_GAP_S:g} s in {args.window:g} s)",
              f"{'':14} {'N':>5} {'every 1 s':>10} {'worst gap':>10} {'collector CPU':>14} "
              f"{'docker CPU':>11} {'peak RSS':>10}"]
    for source, windows in scaled.items():
        for count, window in windows.items():
            share = window.collector_cpu_s / window.seconds * 100 if window.seconds else None
            docker_share = window.docker_cpu_s / window.seconds * 100 if window.seconds else None
            lines.append(
                f"{source + ' path':14} {count:>5} {'yes' if window.every_interval else 'no':>10}"
                f" {fmt(window.worst_gap_s, 2) + ' s':>10} {fmt(share, 1) + ' %':>14}"
                f" {fmt(docker_share, 1) + ' %':>11} {window.peak_rss_kib / 1024:>7.1f} MiB")
    summary = {}
    for source, windows in scaled.items():
        passing = [count for count, window in windows.items() if window.every_interval]
        largest = max(passing) if passing else None
        summary[source] = largest
        if largest is None:
            lines.append(f"{source} path: no N sampled every interval")
            continue
        window = windows[largest]
        lines.append(
            f"{source} path: largest N sampled every {INTERVAL_S:g} s = {largest}, collector "
            f"{window.collector_cpu_s / window.seconds * 100:.1f} % of one core, "
            f"peak RSS {window.peak_rss_kib / 1024:.1f} MiB (VmHWM)")
    report["largest_sustained_n"] = summary
    return "\n".join(lines)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
