"""The collector's benchmark suite, one command, every figure beside its baseline:

1. a full cycle over N sleeping containers (API path polled, fast path, ``docker stats
   --no-stream``, raw floor), median of several;
2. CPU seconds per 1000 samples of the real ``statspout-collector`` process, and of dockerd +
   containerd + the shims together, for the API path (streams and one-shot polling), the fast
   path and ``docker stats --no-stream`` once a second, over a fixed window at a 1 s interval;
3. the API path's two modes at a 1 s and a 10 s interval over the same N: the collector's and
   Docker's CPU share of one core, which ``--api-mode auto`` chooses by;
4. sustained scale: at each N of (50, 100, 200), whether every container is sampled in every
   1 s interval (worst gap between a container's consecutive samples), with the collector's
   and Docker's CPU share of one core and the collector's peak RSS (VmHWM), for the API path
   streamed and polled and for the fast path.

    .venv/bin/python bench/collector_suite.py [-n 50] [--window 20] [--scale 50,100,200]
                                              [--parts cycle,cost,modes,scale] [--before DIR]

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
# A container counts as sampled every interval when no two of its samples are further apart
# than this many intervals (1.5 s at 1 s).
MAX_GAP_INTERVALS = 1.5
MAX_GAP_S = MAX_GAP_INTERVALS * INTERVAL_S
WARMUP_LIMIT_S = 60.0
# Part 3: the intervals the API modes are compared at; a window holds at least 3 intervals.
MODE_INTERVALS_S = (1.0, 2.0, 10.0)
# The collector's ways of reading: its --source and extra options.
WAYS = {
    "api stream": ("api", ("--api-mode", "stream")),
    "api poll": ("api", ("--api-mode", "poll")),
    "cgroup": ("cgroup", ()),
}
PARTS = ("cycle", "cost", "modes", "scale")


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


def run_collector(way: str, infos: list[ContainerInfo], subscriber: Subscriber,
                  window_s: float, log_path: Path, pythonpath: Path | None = None,
                  interval_s: float = INTERVAL_S) -> Window:
    """The real collector process reading one of WAYS at ``interval_s``: wait until it
    samples all of ``infos``, then measure one window. ``pythonpath``: run another checkout's
    collector (with its own default API mode: it may have no --api-mode)."""
    wanted = {info.id for info in infos}
    env = dict(os.environ)
    source, options = WAYS[way]
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
        options = ()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "statspout.collector.main", "--source", source, *options,
             "--interval", str(interval_s), "--connect", subscriber.endpoint,
             # Each window ends with the collector's report lines, in the log.
             "--log-level", "info", "--report-interval", str(window_s)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    try:
        warm: dict[str, list[float]] = defaultdict(list)
        deadline = time.monotonic() + WARMUP_LIMIT_S + 2 * interval_s
        while not wanted <= {cid for cid, times in warm.items() if len(times) >= 2}:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {way} collector did not sample every container; "
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
        window.every_interval = window.worst_gap_s <= MAX_GAP_INTERVALS * interval_s
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
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"which parts to run (default {','.join(PARTS)})")
    parser.add_argument("--before", type=Path,
                        help="another checkout whose collector part 2 measures beside this one")
    args = parser.parse_args(argv)
    scale = sorted(int(n) for n in args.scale.split(","))
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        parser.error(f"--parts: some of {', '.join(PARTS)}")
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
    cost: dict[str, Window] = {}
    modes: dict[tuple[str, float], Window] = {}
    scaled: dict[str, dict[int, Window]] = {}
    context = zmq.Context()
    subscriber = Subscriber(context)
    try:
        with cycle.sleeping_containers(client) as containers:
            infos = containers.grow(args.containers)
            if "cycle" in parts:
                say(f"1. cycle over {args.containers} containers")
                report["cycle"] = cycle.measure_cycles(client, infos, args.repeat)
            if "cost" in parts:
                say(f"2. CPU per 1000 samples, {args.window:g} s windows")
                cost = measure_cost(args, infos, subscriber, log_path)
                report["cost"] = {name: vars(w) | {"per_container": None}
                                  for name, w in cost.items()}
            if "modes" in parts:
                say(f"3. API modes at {', '.join(f'{i:g} s' for i in MODE_INTERVALS_S)}")
                modes = measure_modes(args, infos, subscriber, log_path)
                report["modes"] = {f"{way} every {interval:g} s": vars(w) | {"per_container": None}
                                   for (way, interval), w in modes.items()}
            if "scale" in parts:
                say(f"4. sustained scale at {INTERVAL_S:g} s: {scale}")
                scaled = measure_scale(scale, containers, subscriber, args.window, log_path)
                report["scale"] = {way: {count: vars(w) | {"per_container": None}
                                         for count, w in windows.items()}
                                   for way, windows in scaled.items()}
    except KeyboardInterrupt:
        say("interrupted; containers removed")
        return 130
    finally:
        subscriber.close()
        context.term()
        client.close()

    print(render(report, cost, modes, scaled, args))
    out = cycle.RESULTS / f"suite-{stamp}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nJSON: {out}\ncollector logs: {log_path}")
    return 0


def measure_cost(args: argparse.Namespace, infos: list[ContainerInfo], subscriber: Subscriber,
                 log_path: Path) -> dict[str, Window]:
    cost = {"idle (nothing sampling)": idle_window(args.window)}
    with tempfile.TemporaryDirectory() as tmp:
        before = package_root(args.before, Path(tmp)) if args.before else None
        for way, path in (("api stream", "API path, stream"), ("api poll", "API path, poll"),
                          ("cgroup", "fast path")):
            if before is not None and way != "api poll":  # before and after one after the other
                cost[f"collector, {path.split(',')[0]}, before"] = run_collector(
                    way, infos, subscriber, args.window, log_path, before)
            cost[f"collector, {path}"] = run_collector(way, infos, subscriber, args.window,
                                                       log_path)
    cost["docker stats --no-stream, 1/s"] = docker_stats_window(infos, args.window)
    return cost


def measure_modes(args: argparse.Namespace, infos: list[ContainerInfo], subscriber: Subscriber,
                  log_path: Path) -> dict[tuple[str, float], Window]:
    """Both API modes at each of MODE_INTERVALS_S, a window of at least three intervals."""
    modes = {}
    for interval in MODE_INTERVALS_S:
        for way in ("api stream", "api poll"):
            say(f"   {way} every {interval:g} s")
            modes[way, interval] = run_collector(way, infos, subscriber,
                                                 max(args.window, 3 * interval), log_path,
                                                 interval_s=interval)
    return modes


def measure_scale(scale: list[int], containers: cycle.SleepingContainers, subscriber: Subscriber,
                  window_s: float, log_path: Path) -> dict[str, dict[int, Window]]:
    scaled: dict[str, dict[int, Window]] = {way: {} for way in WAYS}
    for count in scale:
        infos = containers.grow(count)
        for way in WAYS:
            say(f"   {count} containers, {way}")
            try:
                scaled[way][count] = run_collector(way, infos, subscriber, window_s, log_path)
            except RuntimeError as exc:
                say(f"   {exc}")
                scaled[way][count] = Window(seconds=0, samples=0, every_interval=False)
    return scaled


def share(cpu_s: float, window: Window) -> float | None:
    """CPU seconds over a window as a percentage of one core."""
    return cpu_s / window.seconds * 100 if window.seconds else None


def render(report: dict, cost: dict[str, Window], modes: dict[tuple[str, float], Window],
           scaled: dict[str, dict[int, Window]], args: argparse.Namespace) -> str:
    machine = report["machine"]
    lines = [f"Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), "
             f"{machine['memory_gib']} GiB, kernel {machine['kernel']}, "
             f"Python {machine['python']}"]
    if "cycle" in report:
        lines += ["", cycle.cycle_table(report["cycle"], args.containers)]
    if cost:
        lines += ["", *cost_table(cost, args)]
    if modes:
        lines += ["", *modes_table(modes, args)]
    if scaled:
        lines += ["", *scale_table(scaled, args, report)]
    return "\n".join(lines)


def cost_table(cost: dict[str, Window], args: argparse.Namespace) -> list[str]:
    lines = [f"CPU seconds per 1000 samples ({args.containers} containers, "
             f"{args.window:g} s window, {INTERVAL_S:g} s interval)",
             f"{'':34} {'samples':>8} {'sampler CPU s':>14} {'per 1000':>9} "
             f"{'docker CPU s':>13} {'per 1000':>9}"]
    for name, window in cost.items():
        lines.append(
            f"{name:34} {window.samples:>8} {fmt(window.collector_cpu_s):>14} "
            f"{fmt(window.per_1000(window.collector_cpu_s)):>9} "
            f"{fmt(window.docker_cpu_s):>13} {fmt(window.per_1000(window.docker_cpu_s)):>9}")
    lines.append("(docker = dockerd + containerd + shims, whatever asked them; for docker stats"
                 " the sampler is the docker CLI)")
    for path, now in (("API path", "API path, stream"), ("fast path", "fast path")):
        before, after = cost.get(f"collector, {path}, before"), cost[f"collector, {now}"]
        if before is None:
            continue
        ratios = []
        for what in ("collector_cpu_s", "docker_cpu_s"):
            old, new = before.per_1000(getattr(before, what)), after.per_1000(getattr(after, what))
            ratios.append(fmt(new / old if old and new is not None else None, 2))
        lines.append(f"{now}: after / {path} before, per 1000 samples: collector "
                     f"{ratios[0]}, docker {ratios[1]}")
    return lines


def modes_table(modes: dict[tuple[str, float], Window], args: argparse.Namespace) -> list[str]:
    lines = [f"API path, streams against one-shot polling ({args.containers} containers; "
             f"CPU as a share of one core)",
             f"{'':12} {'interval':>9} {'samples':>8} {'worst gap':>10} {'collector CPU':>14} "
             f"{'docker CPU':>11} {'docker CPU per 1000':>20}"]
    for (way, interval), window in modes.items():
        lines.append(
            f"{way:12} {interval:>7g} s {window.samples:>8} "
            f"{fmt(window.worst_gap_s, 2) + ' s':>10} "
            f"{fmt(share(window.collector_cpu_s, window), 1) + ' %':>14} "
            f"{fmt(share(window.docker_cpu_s, window), 1) + ' %':>11} "
            f"{fmt(window.per_1000(window.docker_cpu_s)):>18} s")
    return lines


def scale_table(scaled: dict[str, dict[int, Window]], args: argparse.Namespace,
                report: dict) -> list[str]:
    lines = [f"Sustained scale at {INTERVAL_S:g} s (sampled every interval: no gap over "
             f"{MAX_GAP_S:g} s between a container's samples in {args.window:g} s)",
             f"{'':16} {'N':>5} {'every 1 s':>10} {'worst gap':>10} {'collector CPU':>14} "
             f"{'docker CPU':>11} {'peak RSS':>10}"]
    for way, windows in scaled.items():
        for count, window in windows.items():
            lines.append(
                f"{way + ' path':16} {count:>5} {'yes' if window.every_interval else 'no':>10}"
                f" {fmt(window.worst_gap_s, 2) + ' s':>10}"
                f" {fmt(share(window.collector_cpu_s, window), 1) + ' %':>14}"
                f" {fmt(share(window.docker_cpu_s, window), 1) + ' %':>11}"
                f" {window.peak_rss_kib / 1024:>7.1f} MiB")
    summary = {}
    for way, windows in scaled.items():
        passing = [count for count, window in windows.items() if window.every_interval]
        largest = max(passing) if passing else None
        summary[way] = largest
        if largest is None:
            lines.append(f"{way} path: no N sampled every interval")
            continue
        window = windows[largest]
        lines.append(
            f"{way} path: largest N sampled every {INTERVAL_S:g} s = {largest}, collector "
            f"{fmt(share(window.collector_cpu_s, window), 1)} % of one core, "
            f"peak RSS {window.peak_rss_kib / 1024:.1f} MiB (VmHWM)")
    report["largest_sustained_n"] = summary
    return lines


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
