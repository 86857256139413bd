"""The fleet scenario, one command: HOSTS synthetic collectors × CONTAINERS containers at one
sample per container per INTERVAL, through one real ``statspout-router`` into three real sink
processes — ``statspout-sink influxdb`` (into a real influxd 1.x started here),
``statspout-sink prometheus`` (scraped here) and ``statspout-sink stdout`` (into a pipe that
counts its lines) — and whether everything arrived, how fast, how late, at what cost.

    .venv/bin/python bench/fleet.py --hosts 100 --containers 200 --interval 1 --seconds 60

Each collector is a process of its own (bench/fleet_collector.py) with its own host name and
sequence, publishing through ``bus.CollectorPublisher`` what ``statspout-collector`` does.
How each figure is taken (loss per store, latency, CPU, RSS, the processes' own counts) is
written once, in docs/performance.md, "Fleet scenario".

Everything listens on 127.0.0.1 and lives in a temporary folder; every process is stopped at
the end, on errors, Ctrl-C and SIGTERM too. Exit status 1 when any loss was seen.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import IO, Any

from collector_suite import peak_rss_kib
from fleet_collector import host_containers, host_name, run_collector
from top_scale import cpu_seconds

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.influxd import InfluxServer, running_influxd
from support.ports import free_port

BIN = Path(sys.executable).parent
DATABASE = "statspout"
PROBE_INDEX = 0  # the probe container of every host (its first sample of each cycle)
SINKS = ("influxdb", "prometheus", "stdout")
STOP_GRACE_S = 10.0
# A sink's counts of the messages the router dropped for it (its queue to the sink was full):
# those it had sent again from the router's replay buffer, and those gone from it already.
REPLAY_COUNTS = ("replayed", "lost_beyond_replay")
# The Prometheus sink drops a container's series after this many intervals without a sample
# (its default, given explicitly). Every container must be in a scrape unless a collector
# itself paused longer than SERIES_CHECKED_UP_TO_GAP intervals between two cycles (starved
# of CPU), which makes its series stale whatever the pipeline does.
STALE_INTERVALS = 3
SERIES_CHECKED_UP_TO_GAP = 2.0


def endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


# Processes


class Child:
    """A program of ours started for the run, its stderr in a file; stopped by ``stop``."""

    def __init__(self, name: str, argv: list[str], log_path: Path,
                 stdout: int | IO[Any] = subprocess.DEVNULL) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.popen = subprocess.Popen(argv, stdout=stdout, stderr=log,
                                          stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def report_counts(log_text: str, sink: str) -> dict[str, int]:
    """The last report line of a sink worker: ``NAME: key=value ...``."""
    found: dict[str, int] = {}
    for match in re.finditer(rf"{sink}: (received=\d+(?: \w+=-?\d+)*)", log_text):
        found = {key: int(value) for key, value in
                 (pair.split("=") for pair in match.group(1).split())}
    return found


# What the stores hold


class StdoutCounter:
    """Reads the stdout sink's pipe in big chunks: sample lines counted, the probe
    containers' lines timed (read time − the timestamp printed in the line)."""

    def __init__(self, stream: IO[bytes], probe_name: str) -> None:
        self._stream = stream
        self._probe = re.compile(
            rb"/" + re.escape(probe_name.encode()) + rb"\] (\S+)\.(\d{6})Z CPU: ")
        self.samples = 0
        self.engines = 0
        self.latencies: list[float] = []
        self._seconds: dict[bytes, int] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _epoch(self, text: bytes) -> int:
        seconds = self._seconds.get(text)
        if seconds is None:
            moment = datetime.strptime(text.decode(), "%Y-%m-%dT%H:%M:%S")
            seconds = int(moment.replace(tzinfo=timezone.utc).timestamp())
            self._seconds[text] = seconds
        return seconds

    def _run(self) -> None:
        tail = b""
        fd = self._stream.fileno()
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return
            now = time.time()
            data = tail + chunk
            cut = data.rfind(b"\n")
            whole, tail = data[:cut + 1], data[cut + 1:]
            self.samples += whole.count(b" CPU: ")
            self.engines += whole.count(b" ENGINE: ")
            for match in self._probe.finditer(whole):
                stamp = self._epoch(match.group(1)) + int(match.group(2)) / 1e6
                self.latencies.append(now - stamp)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


@dataclass
class Scrape:
    at: float  # wall-clock seconds, when the request was sent
    seconds: float  # connect to last byte
    containers: int  # container_last_seen series
    engines: int  # machine_cpu_cores series (one per host)
    ages: list[float] = field(default_factory=list)


_LAST_SEEN = re.compile(rb"^container_last_seen\{[^\n]*\} (\S+)", re.M)


def scrape(url: str) -> Scrape:
    started, clock = time.time(), time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read()
    seconds = time.perf_counter() - clock
    seen = [float(value) for value in _LAST_SEEN.findall(body)]
    return Scrape(at=started, seconds=seconds, containers=len(seen),
                  engines=len(re.findall(rb"^machine_cpu_cores\{", body, re.M)),
                  ages=[started - value for value in seen])


def influx_count(influx: InfluxServer, measurement: str, field_name: str) -> int:
    series = influx.query(f'SELECT count("{field_name}") FROM "{measurement}"', DATABASE)
    return int(series[0]["values"][0][1]) if series else 0


class InfluxProbe:
    """Polls the probe container of every host for rows newer than those it has seen."""

    def __init__(self, influx: InfluxServer, probe_name: str, poll_s: float) -> None:
        self._influx = influx
        self._probe_name = probe_name
        self._poll_s = poll_s
        self._newest: dict[str, int] = {}
        self.latencies: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, since_ns: int) -> None:
        self._since = since_ns
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            sent = time.time()
            oldest = min(self._newest.values(), default=self._since)
            try:
                series = self._influx.query(
                    f"SELECT usage_total FROM docker_container_cpu WHERE container_name = "
                    f"'{self._probe_name}' AND time > {oldest} GROUP BY engine_host", DATABASE)
            except (OSError, RuntimeError):
                self.errors += 1
                continue
            for one in series:
                host = one["tags"]["engine_host"]
                newest = self._newest.get(host, self._since)
                for stamp, _value in one["values"]:
                    if stamp > newest:
                        self.latencies.append(sent - stamp / 1e9)
                self._newest[host] = max(newest, one["values"][-1][0])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Scraper:
    """Scrapes the Prometheus sink every ``every_s`` seconds from ``start_at`` (wall clock),
    and once at ``also_at``, while the run lasts."""

    def __init__(self, url: str, every_s: float) -> None:
        self._url = url
        self._every_s = every_s
        self.scrapes: list[Scrape] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, start_at: float, also_at: float) -> None:
        self._next_periodic = start_at + self._every_s
        self._also_at: float | None = also_at
        self._thread.start()

    def _run(self) -> None:
        while True:
            due = self._next_periodic if self._also_at is None \
                else min(self._next_periodic, self._also_at)
            if self._stop.wait(max(0.0, due - time.time())):
                return
            if due == self._also_at:
                self._also_at = None
            else:
                self._next_periodic += self._every_s
            try:
                self.scrapes.append(scrape(self._url))
            except OSError:
                self.errors += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)


# The run


def wait_until(what: str, condition: Callable[[], bool], timeout: float,
               alive: Callable[[], None], poll_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(poll_s)


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def router_status(control: str) -> dict[str, Any]:
    done = subprocess.run([str(BIN / "statspout-router"), "--status", "--json", "--control",
                           control], capture_output=True, text=True, timeout=30, check=True)
    status: dict[str, Any] = json.loads(done.stdout)
    return status


def stop_collectors(collectors: list[Any], stop_cycles: Any, go: Any, release: Any) -> None:
    """End every collector process: out of its warm-up or its cycles, its socket closed; the
    ones still there after STOP_GRACE_S are terminated."""
    stop_cycles.set()
    go.set()
    release.set()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in collectors:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in collectors:
        if process.is_alive():
            process.terminate()
            process.join(5)


def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace, work: Path, stack: ExitStack) -> dict[str, Any]:
    hosts, containers, interval = args.hosts, args.containers, args.interval
    cycles = max(1, round(args.seconds / interval))
    listen, publish, replay = endpoint(), endpoint(), endpoint()
    control = f"ipc://{work}/router.ctl"
    probe_name = host_containers(host_name(0), containers)[PROBE_INDEX].name

    # The collectors first, while this process has no thread and no socket to fork with.
    fork = mp.get_context("fork")
    go, release, stop_cycles = fork.Event(), fork.Event(), fork.Event()
    first_tick, results = fork.Value("d", 0.0), fork.Queue()
    collectors = [fork.Process(target=run_collector, name=host_name(n), daemon=True,
                               args=(n, listen, containers, interval, cycles, go, first_tick,
                                     n / hosts * interval, results,
                                     time.monotonic() + args.start_timeout, release,
                                     args.collector_nice, stop_cycles))
                  for n in range(hosts)]
    for process in collectors:
        process.start()
    stack.callback(stop_collectors, collectors, stop_cycles, go, release)

    influx = stack.enter_context(running_influxd())
    influx.create_database(DATABASE)

    def start(name: str, argv: list[str], stdout: int | IO[Any] = subprocess.DEVNULL) -> Child:
        child = Child(name, argv, work / f"{name}.log", stdout)
        stack.callback(child.stop)
        return child

    router = start("router", [
        str(BIN / "statspout-router"), "--listen", listen, "--publish", publish,
        "--replay", replay, "--control", control, "--report-interval", "3600"])
    # A report line a second: the drain follows the Prometheus sink's progress by it.
    common = ["--connect", publish, "--replay", replay, "--state-dir", str(work / "state"),
              "--report-interval", "1"]
    prometheus_port = free_port()
    sinks = {
        "influxdb": start("influxdb", [
            str(BIN / "statspout-sink"), "influxdb", *common, "--influxdb.url", influx.url,
            "--influxdb.database", DATABASE]),
        "prometheus": start("prometheus", [
            str(BIN / "statspout-sink"), "prometheus", *common,
            "--prometheus.address", f"127.0.0.1:{prometheus_port}",
            "--prometheus.stale-intervals", str(STALE_INTERVALS)]),
        "stdout": start("stdout", [str(BIN / "statspout-sink"), "stdout", *common],
                        subprocess.PIPE),
    }
    processes = {"router": router, **sinks}
    stdout_pipe = sinks["stdout"].popen.stdout
    assert stdout_pipe is not None
    counter = StdoutCounter(stdout_pipe, probe_name)
    metrics_url = f"http://127.0.0.1:{prometheus_port}/metrics"

    def alive() -> None:
        for child in processes.values():
            if not child.alive():
                raise RuntimeError(f"{child.name} exited ({child.popen.returncode}): "
                                   f"{child.log()[-2000:]}")

    # Ready: every host's warm-up engine messages reach the router and all three stores.
    def ready() -> bool:
        try:
            status = router_status(control)
            seen = len(status["hosts"]) + status["hosts_not_shown"]
            return (seen >= hosts and counter.engines >= hosts
                    and scrape(metrics_url).engines >= hosts
                    and influx_count(influx, "docker", "n_cpus") >= hosts)
        except (OSError, RuntimeError, subprocess.SubprocessError, KeyError):
            return False

    wait_until("every host linked and seen by every store", ready, args.start_timeout, alive,
               poll_s=0.5)

    load_before = os.getloadavg()
    bench_cpu_before = time.process_time()
    # The load: every host ticks `cycles` times from first_tick (+ its phase).
    before = {name: cpu_seconds(child.pid) for name, child in processes.items()}
    # ServerProcess keeps its Popen to itself; the pid is read, nothing else is touched.
    influx_pid = influx._process.pid if influx._process else 0
    before["influxd"] = cpu_seconds(influx_pid)
    first_tick.value = time.time() + 0.5
    started = first_tick.value
    probe = InfluxProbe(influx, probe_name, args.poll)
    probe.start(int(started * 1e9))
    scraper = Scraper(metrics_url, args.scrape_every)
    # One scrape halfway through the cycles, when every host is publishing.
    scraper.start(started, started + (cycles / 2 + 0.5) * interval)
    go.set()

    tallies: list[dict[str, Any]] = []
    # Collectors starved of CPU run late: at 1.5 times the cycles' span (+ 10 s) they are told
    # to stop, and report the cycles they ran; then --start-timeout s more to hear from all.
    stop_at = time.monotonic() + 1.5 * cycles * interval + 10
    deadline = stop_at + args.start_timeout
    while len(tallies) < hosts:
        alive()
        if time.monotonic() > stop_at and not stop_cycles.is_set():
            stop_cycles.set()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{hosts - len(tallies)} collectors did not finish in time")
        try:
            tallies.append(results.get(timeout=1))
        except queue.Empty:
            continue
    load_end = time.time()
    # The scrapes while every host published (after the first cycle of the last to start,
    # before the end of the first to finish): every container must be in each. After the
    # load, series go stale (--prometheus.stale-intervals) and vanish, as they should.
    all_active = (max(t["first_cycle_at"] for t in tallies) + interval,
                  min(t["last_cycle_at"] for t in tallies) + interval)
    sent = {kind: sum(t[f"{kind}_taken"] for t in tallies)
            for kind in ("stats", "states", "engines")}
    dropped = sum(t["stats_dropped"] + t["states_dropped"] + t["engines_dropped"]
                  for t in tallies)

    # The drain: until every store holds what was sent, nothing moves for --settle s, or
    # --drain-max s have passed.
    # Prometheus: the samples its worker took (its report line, every second): the scrape
    # shows a container's latest sample only.
    complete_at: dict[str, float | None] = dict.fromkeys(SINKS)
    held = {"influxdb": 0, "influx_states": 0, "stdout": 0, "prometheus": 0}
    last_change, last_held = time.monotonic(), dict(held)
    drain_deadline = time.monotonic() + args.drain_max
    while time.monotonic() < drain_deadline:
        alive()
        held["influxdb"] = influx_count(influx, "docker_container_cpu", "usage_total")
        held["influx_states"] = influx_count(influx, "docker_container_status", "pid")
        held["stdout"] = counter.samples
        held["prometheus"] = report_counts(sinks["prometheus"].log(), "prometheus").get(
            "samples", 0)
        now = time.time()
        if complete_at["influxdb"] is None and held["influxdb"] >= sent["stats"] \
                and held["influx_states"] >= sent["states"]:
            complete_at["influxdb"] = now
        for name in ("stdout", "prometheus"):
            if complete_at[name] is None and held[name] >= sent["stats"]:
                complete_at[name] = now
        if all(complete_at.values()):
            break
        if held != last_held:
            last_change, last_held = time.monotonic(), dict(held)
        elif time.monotonic() - last_change > args.settle:
            break
        time.sleep(0.5)
    drained = time.time()
    status = router_status(control)  # before the collectors close their links
    release.set()
    probe.stop()
    scraper.stop()
    in_load = [s for s in scraper.scrapes if all_active[0] <= s.at <= all_active[1]]

    window = drained - started
    cpu_s = {name: cpu_seconds(child.pid) - before[name] for name, child in processes.items()}
    cpu_s["influxd"] = cpu_seconds(influx_pid) - before["influxd"]
    rss = {name: peak_rss_kib(child.pid) * 1024 for name, child in processes.items()}
    rss["influxd"] = peak_rss_kib(influx_pid) * 1024

    # Sinks stop first (their final report and writes), then the router.
    codes = {name: child.stop() for name, child in sinks.items()}
    counter.join(10)
    codes["router"] = router.stop()
    reports = {name: report_counts(child.log(), name) for name, child in sinks.items()}
    held["influxdb"] = influx_count(influx, "docker_container_cpu", "usage_total")
    held["influx_states"] = influx_count(influx, "docker_container_status", "pid")
    held["stdout"] = counter.samples
    held["prometheus"] = reports["prometheus"].get("samples", 0)

    return {
        "hosts": hosts, "containers": containers, "interval_s": interval, "cycles": cycles,
        "cycles_run": sum(t["cycles"] for t in tallies), "stopped_early": stop_cycles.is_set(),
        # From the first tick until the last cycle ended, and at least the cycles' own span.
        "load_seconds": max(load_end - started, cycles * interval),
        "drain_seconds": drained - load_end,
        "sent": sent, "sent_messages": sum(t["publisher"]["sent"] for t in tallies),
        "collector_dropped": dropped,
        "collector_late_cycles": sum(t["late_cycles"] for t in tallies),
        "collector_worst_gap_s": max(t["worst_gap_s"] for t in tallies),
        "collector_cpu_s": sum(t["cpu_s"] for t in tallies),
        "bench_cpu_s": time.process_time() - bench_cpu_before,
        "held": held, "complete_at": {k: None if v is None else v - started
                                      for k, v in complete_at.items()},
        "prometheus": {
            # None: no scrape fell while every host published (a run too short for
            # --scrape-every, or collectors far out of step).
            "series": min((s.containers for s in in_load), default=None),
            "scrapes": [(round(s.at - started, 3), s.containers, round(s.seconds, 3))
                        for s in scraper.scrapes],
            "scrapes_while_all_published": len(in_load), "scrape_errors": scraper.errors,
            "scrape_s_max": max((s.seconds for s in scraper.scrapes), default=None),
            "age_p50": percentile([a for s in in_load for a in s.ages], 0.5),
            "age_p99": percentile([a for s in in_load for a in s.ages], 0.99),
        },
        "latency": {
            "influxdb": (percentile(probe.latencies, 0.5), percentile(probe.latencies, 0.99),
                         len(probe.latencies)),
            "stdout": (percentile(counter.latencies, 0.5), percentile(counter.latencies, 0.99),
                       len(counter.latencies)),
        },
        "cpu_s": cpu_s, "cpu_window_s": window, "load_average": (load_before, os.getloadavg()),
        "rss": rss, "router_status": status, "reports": reports,
        "exit_codes": codes,
    }


# The report


def series_checked(result: dict[str, Any]) -> bool:
    """Whether the scrapes' series count says something of the pipeline: a scrape fell while
    every host published, and no collector paused long enough to go stale on its own."""
    return result["prometheus"]["series"] is not None and \
        result["collector_worst_gap_s"] <= SERIES_CHECKED_UP_TO_GAP * result["interval_s"]


def losses(result: dict[str, Any]) -> dict[str, int]:
    """Every count that says something was lost; all must be 0."""
    sent, held = result["sent"], result["held"]
    expected_series = result["hosts"] * result["containers"]
    hosts = result["router_status"]["hosts"].values()
    reports = result["reports"]
    found = {
        "collector publishers refused": result["collector_dropped"],
        "influxdb samples missing": sent["stats"] - held["influxdb"],
        "influxdb states missing": sent["states"] - held["influx_states"],
        "stdout sample lines missing": sent["stats"] - held["stdout"],
        "prometheus series missing": expected_series - (result["prometheus"]["series"]
                                                        if series_checked(result)
                                                        else expected_series),
        "router input gaps": sum(h["gaps"] for h in hosts),
        "router messages not forwarded": result["sent_messages"]
        - result["router_status"]["routes"].get("all", {}).get("out", 0),
        "router malformed": result["router_status"]["malformed"],
    }
    for sink in SINKS:
        counts = reports.get(sink, {})
        found[f"{sink} samples not taken"] = sent["stats"] - counts.get("samples", 0)
        for key in ("gaps", "lost_beyond_replay", "malformed", "sink_errors", "dropped",
                    "rejected", "unflushed"):
            if counts.get(key):
                found[f"{sink} {key}"] = counts[key]
    return {what: count for what, count in found.items() if count}


def fmt_ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:,.0f} ms"


def markdown(result: dict[str, Any]) -> str:
    sent, held, rss = result["sent"], result["held"], result["rss"]
    load, complete, window = result["load_seconds"], result["complete_at"], result["cpu_window_s"]
    status, reports, prom = result["router_status"], result["reports"], result["prometheus"]
    latency = result["latency"]
    expected_series = result["hosts"] * result["containers"]

    def rate(count: int, seconds: float | None) -> str:
        """Per second until the store held everything; over the whole run (marked *) when it
        never did."""
        if seconds is None:
            return f"{count / window:,.0f} *"
        return f"{count / seconds:,.0f}"

    def cpu(name: str) -> str:
        return f"{result['cpu_s'][name] / window:.0%} ({result['cpu_s'][name]:.2f} s)"

    def per_message(cpu_s: float, messages: int) -> str:
        return "—" if not messages else f"{cpu_s / messages * 1e6:,.0f} µs"

    def handled(sink: str) -> int:
        """Wire messages a sink worker handled, live or from the router's replay buffer (its
        ``received`` counts router payloads: a batch is one)."""
        report = reports.get(sink, {})
        return sum(int(report.get(kind, 0)) for kind in ("samples", "states", "engines", "events"))

    def mib(name: str) -> str:
        return f"{rss[name] / 2**20:,.0f} MiB"

    def counts(name: str, keys: tuple[str, ...]) -> str:
        report = reports.get(name, {})
        return ", ".join(f"{key} {report.get(key, '?'):,}" for key in keys)

    def p50_p99(pair: list[Any] | tuple[Any, ...]) -> str:
        return f"{fmt_ms(pair[0])} / {fmt_ms(pair[1])}"

    shown = status["hosts"].values()
    hidden = status["hosts_not_shown"]
    routed = status["routes"].get("all", {}).get("out", 0)
    replay = status.get("replay") or {}
    before, after = result["load_average"]
    target = result["hosts"] * result["containers"] / result["interval_s"]
    stopped = "" if not result["stopped_early"] else (
        f" (stopped at the time limit after {result['cycles_run']:,} of "
        f"{result['cycles'] * result['hosts']:,} host cycles)")
    # The fewest containers in a scrape taken while every host published.
    series = "no scrape" if prom["series"] is None else f"{prom['series']:,}"
    if prom["series"] is not None and not series_checked(result):
        series += " (not checked: a collector paused)"
    attempted = result["sent_messages"] + result["collector_dropped"]
    lines = [
        f"**{result['hosts']} hosts × {result['containers']} containers, one sample each every "
        f"{result['interval_s']:g} s, {result['cycles']} cycles**"
        f"{stopped}: load {load:.1f} s, then "
        f"{result['drain_seconds']:.1f} s until the stores held everything or stopped moving; "
        f"collectors published {sent['stats']:,} samples + {sent['states']:,} states + "
        f"{sent['engines']:,} engine messages ({result['sent_messages']:,} messages with the "
        f"warm-up), their publishers refused {result['collector_dropped']:,}, late cycles "
        f"{result['collector_late_cycles']:,} (longest pause between two cycles "
        f"{result['collector_worst_gap_s']:.2f} s), their CPU {result['collector_cpu_s']:.1f} s; "
        f"this script's CPU (probe, scrapes, counting pipe) {result['bench_cpu_s']:.1f} s; "
        f"CPU shares over {window:.1f} s; load average {before[0]:.1f} before, "
        f"{after[0]:.1f} after",
        "",
        "| process | samples/s | held / sent | CPU, one core (s) | CPU per message | peak RSS "
        "| latency p50 / p99 | its own counts |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| collectors (in) | {sent['stats'] / load:,.0f} of {target:,.0f} | — | "
        f"{result['collector_cpu_s'] / window:.0%} ({result['collector_cpu_s']:.1f} s) | "
        f"{per_message(result['collector_cpu_s'], attempted)} | — | — "
        f"| refused {result['collector_dropped']:,} |",
        f"| router | {routed / load:,.0f} msg/s | {routed:,} / {result['sent_messages']:,} msg | "
        f"{cpu('router')} | {per_message(result['cpu_s']['router'], routed)} | {mib('router')} "
        f"| — | in "
        f"{sum(h['messages'] for h in shown):,}{f' ({hidden} hosts not listed)' if hidden else ''}"
        f", gaps {sum(h['gaps'] for h in shown):,}, malformed {status['malformed']:,}, replay "
        f"requests {replay.get('requests', 0):,}, replayed {replay.get('replayed', 0):,}, input "
        f"links dropped {status['input_links_dropped']:,} |",
        f"| influxdb sink | {rate(held['influxdb'], complete['influxdb'])} | "
        f"{held['influxdb']:,} / {sent['stats']:,} (states {held['influx_states']:,} / "
        f"{sent['states']:,}) | {cpu('influxdb')} | "
        f"{per_message(result['cpu_s']['influxdb'], handled('influxdb'))} | {mib('influxdb')} | "
        f"{p50_p99(latency['influxdb'])} | "
        f"{counts('influxdb', ('gaps', 'malformed', *REPLAY_COUNTS, 'dropped', 'rejected'))} |",
        f"| influxd (the store) | — | — | {cpu('influxd')} | "
        f"{per_message(result['cpu_s']['influxd'], handled('influxdb'))} | {mib('influxd')} | — "
        "| — |",
        f"| prometheus sink | {rate(held['prometheus'], complete['prometheus'])} | "
        f"{held['prometheus']:,} / {sent['stats']:,}; series {series} / "
        f"{expected_series:,} | {cpu('prometheus')} | "
        f"{per_message(result['cpu_s']['prometheus'], handled('prometheus'))} | "
        f"{mib('prometheus')} | age at scrape "
        f"{fmt_ms(prom['age_p50'])} / {fmt_ms(prom['age_p99'])} | "
        f"{counts('prometheus', ('gaps', 'malformed', *REPLAY_COUNTS))}; "
        f"{prom['scrapes_while_all_published']} scrapes while every host published, slowest "
        f"scrape {fmt_ms(prom['scrape_s_max'])} |",
        f"| stdout sink | {rate(held['stdout'], complete['stdout'])} | "
        f"{held['stdout']:,} / {sent['stats']:,} lines | {cpu('stdout')} | "
        f"{per_message(result['cpu_s']['stdout'], handled('stdout'))} | {mib('stdout')} | "
        f"{p50_p99(latency['stdout'])} | "
        f"{counts('stdout', ('gaps', 'malformed', *REPLAY_COUNTS))} |",
    ]
    lost = losses(result)
    lines += ["", "loss: " + ("none" if not lost else
                              "; ".join(f"{what} {count:,}" for what, count in lost.items()))]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--containers", type=int, default=200, help="per host")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between cycles")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load")
    parser.add_argument("--poll", type=float, default=0.25,
                        help="seconds between the InfluxDB latency probe's queries")
    parser.add_argument("--scrape-every", type=float, default=10.0,
                        help="seconds between scrapes of the Prometheus sink")
    parser.add_argument("--settle", type=float, default=15.0,
                        help="drain: give up when no store moved for this many seconds")
    parser.add_argument("--collector-nice", type=int, default=0,
                        help="nice value added to the collector processes (19: they take only "
                        "the CPU the pipeline leaves, as if they ran on other machines)")
    parser.add_argument("--drain-max", type=float, default=180.0,
                        help="drain: give up after this many seconds in any case")
    parser.add_argument("--start-timeout", type=float, default=120.0,
                        help="seconds for everything to start and link")
    parser.add_argument("--logs", type=Path,
                        help="copy the router's and sinks' logs into this folder at the end")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here too")
    parser.add_argument("--append", type=Path, help="append the markdown report to this file")
    args = parser.parse_args()
    if not (1 <= args.hosts <= 1000 and 1 <= args.containers <= 1000
            and 0.1 <= args.interval <= 60 and 0 < args.seconds <= 600):
        parser.error("bounds: --hosts and --containers 1..1000, --interval 0.1..60 s, "
                     "--seconds up to 600")
    # Ctrl-C, and SIGTERM alike, end the run through the clean-up (also when started in the
    # background, where SIGINT comes in ignored).
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="statspout-fleet-") as folder:
        try:
            with ExitStack() as stack:
                result = run(args, Path(folder), stack)
        except KeyboardInterrupt:
            print("fleet: interrupted; every process it started is stopped", file=sys.stderr)
            return 130
        finally:
            if args.logs:
                args.logs.mkdir(parents=True, exist_ok=True)
                for log in Path(folder).glob("*.log"):
                    shutil.copy(log, args.logs / log.name)
    report = markdown(result)
    print(report)
    if args.append:
        with args.append.open("a") as out:
            out.write(report + "\n\n")
    if args.json:
        args.json.write_text(json.dumps({**result, "losses": losses(result)}, indent=1))
    return 1 if losses(result) else 0


if __name__ == "__main__":
    sys.exit(main())
