"""The Prometheus sink at fleet size: scrape time and sustained put rate with 20,000 containers.

In one run, in this process:

- **put**: the sink's ``write`` (what the worker calls per sample) for ``--rounds`` rounds of
  one sample per container, beside a plain loop storing the same samples in a dict by (host,
  id): the sink's cost over the least any table could cost;
- **scrape**: ``GET /metrics`` (OpenMetrics, by curl from another process) from the sink's own
  server (a new connection each, as Prometheus opens them, the whole body read), ``--scrapes``
  times after each round of fresh
  samples, so that every scrape renders every container anew (the worst case: at a 1 s
  interval every container has a new sample between two 15 s scrapes); best, median, worst;
- **put while scraped**: the same puts again while a thread scrapes back to back, the
  worst a scraper can do to the worker (both share one interpreter);
- the body is checked with ``promtool check metrics`` (Debian's prometheus package) when it is
  installed, and its series counted.

``--sink module:Class`` measures another sink class (an older version saved aside) in the same
run. ``--full`` sends wire 1.1 samples, a state per container and an engine per host. Not a
test: it prints figures.

    .venv/bin/python bench/prometheus_scale.py [--containers 20000] [--rounds 5] [--full]
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from statspout.sinks.base import Sink
from statspout.sinks.prometheus import PrometheusSink
from statspout.wire import ContainerState, ContainerStats, EngineInfo

LABELS = {"com.docker.compose.project": "shop", "com.example.team": 'ops "blue"\\',
          "tier": "web"}


def samples_of_round(containers: int, round_number: int, full: bool = False
                     ) -> list[ContainerStats]:
    """One sample per container, 200 containers per host, figures growing with the round;
    ``full``: with wire 1.1's figures (one interface, one block device, a CPU quota)."""
    start = time.time_ns()
    extra: dict[str, Any] = {}
    if full:
        extra = dict(cpu_user_ns=round_number * 10**8, cpu_system_ns=10**7, cpu_periods=100,
                     cpu_throttled_periods=5, cpu_throttled_ns=10**8, mem_cgroup_usage=60 * 2**20,
                     mem_max_usage=70 * 2**20, mem_failcnt=0, mem_rss=40 * 2**20,
                     mem_cache=20 * 2**20, mem_mapped_file=2**20, mem_swap=0, oom_events=0,
                     net_interfaces={"eth0": {"rx_bytes": 10, "tx_bytes": 20, "rx_packets": 1,
                                              "tx_packets": 2, "rx_errors": 0, "tx_errors": 0,
                                              "rx_dropped": 0, "tx_dropped": 0}},
                     blk_devices={"8:0": {"read_bytes": 4096, "write_bytes": 8192}})
    return [ContainerStats(
        seq=round_number * containers + n + 1, host=f"host-{n // 200:03d}", id=f"{n:064x}",
        name=f"svc-{n}", image="nginx:1.27", labels=LABELS, timestamp=start + n,
        cpu_percent=None if round_number == 0 else 12.5 + n % 7,
        cpu_usage_ns=round_number * 10**9 + n, online_cpus=4, mem_usage=50 * 2**20 + n,
        mem_limit=2**30, mem_percent=4.88, rx_bytes=n * 10 + round_number,
        tx_bytes=n * 20, rx_packets=n, tx_packets=n, rx_errors=0, tx_errors=0, rx_dropped=0,
        tx_dropped=0, blk_read_bytes=n * 4096, blk_write_bytes=n * 8192, pids=7, **extra,
    ) for n in range(containers)]


def states_and_engines(samples: list[ContainerStats]) -> tuple[list[ContainerState],
                                                              list[EngineInfo]]:
    """A running container's state per sample, and an engine per host."""
    states = [ContainerState(
        seq=s.seq, host=s.host, id=s.id, name=s.name, image=s.image, labels=s.labels,
        timestamp=s.timestamp, interval_s=1.0, status="running", health="healthy",
        health_failing_streak=0, restart_count=0, exit_code=None, oom_killed=False,
        started_at=s.timestamp - 10**12, finished_at=None, pid=1000) for s in samples]
    hosts = sorted({s.host for s in samples})
    engines = [EngineInfo(seq=1, host=host, timestamp=time.time_ns(), interval_s=1.0,
                          engine="docker", server_version="20.10.24", containers_running=200,
                          containers_paused=0, containers_stopped=0, images=10, cpus=2,
                          memory_total=2**34) for host in hosts]
    return states, engines


def sink_class(text: str) -> type[Sink]:
    """``module:Class``, the module found on the path (bench/ first)."""
    module, _, name = text.partition(":")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    found: type[Sink] = getattr(importlib.import_module(module), name)
    return found


def scrape(port: int) -> float:
    """Seconds from connect to last byte of a scrape as Prometheus makes it: from another
    process (curl, when installed, so that reading 90 MB does not compete with the sink for
    this interpreter), asking for OpenMetrics."""
    url = f"http://127.0.0.1:{port}/metrics"
    curl = shutil.which("curl")
    if curl is None:
        started = time.perf_counter()
        text_body(port)
        return time.perf_counter() - started
    result = subprocess.run(
        [curl, "-sS", "-o", "/dev/null", "-w", "%{time_total}", "-H",
         "Accept: application/openmetrics-text; version=1.0.0", url],
        capture_output=True, timeout=60, check=True)
    return float(result.stdout)


def text_body(port: int) -> bytes:
    """A scrape's body in the text format 0.0.4 (what promtool checks)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as response:
        body: bytes = response.read()
    return body


def put_while_scraped(sink: Sink, rounds: list[list[ContainerStats]]) -> float:
    """Seconds the sink's writes of ``rounds`` take while another thread scrapes non-stop."""
    stop = threading.Event()

    def scrape_until_stopped() -> None:
        while not stop.is_set():
            scrape(sink.port)  # type: ignore[attr-defined]

    scraper = threading.Thread(target=scrape_until_stopped)
    scraper.start()
    try:
        started = time.perf_counter()
        for samples in rounds:
            for sample in samples:
                sink.write(sample)
        return time.perf_counter() - started
    finally:
        stop.set()
        scraper.join()


def promtool_check(body: bytes) -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        return "promtool not installed: not checked"
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                            timeout=120, check=False)
    if result.returncode != 0:
        raise SystemExit(f"promtool check metrics refused the output: "
                         f"{result.stdout.decode()[-2000:]}{result.stderr.decode()[-2000:]}")
    return "promtool check metrics: accepted"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=20_000, choices=range(1, 200_001),
                        metavar="1-200000")
    parser.add_argument("--rounds", type=int, default=5, choices=range(1, 51), metavar="1-50")
    parser.add_argument("--scrapes", type=int, default=1, choices=range(1, 11), metavar="1-10",
                        help="scrapes after each round")
    parser.add_argument("--sink", type=sink_class, default=PrometheusSink,
                        help="module:Class of the Prometheus sink to measure (default: ours)")
    parser.add_argument("--full", action="store_true",
                        help="wire 1.1 samples, and a state per container and an engine per host "
                        "(for a sink that takes them)")
    args = parser.parse_args()
    rounds = [samples_of_round(args.containers, r, args.full) for r in range(args.rounds)]
    settings = SimpleNamespace(address=("127.0.0.1", 0), interval=1.0, stale_intervals=3600,
                               label_names=["com.docker.compose.project", "com.example.team"])
    sink = args.sink(settings)
    if args.full:
        states, engines = states_and_engines(rounds[0])
        for state in states:
            sink.handle_state(state)
        for engine in engines:
            sink.handle_engine(engine)
    sink.open()
    put_s = plain_s = 0.0
    scrape_times: list[float] = []
    try:
        for samples in rounds:
            table: dict[tuple[str, str], ContainerStats] = {}
            started = time.perf_counter()
            for sample in samples:
                table[(sample.host, sample.id)] = sample
            plain_s += time.perf_counter() - started
            started = time.perf_counter()
            for sample in samples:
                sink.write(sample)
            put_s += time.perf_counter() - started
            for _ in range(args.scrapes):
                scrape_times.append(scrape(sink.port))
        body = text_body(sink.port)
        busy_s = put_while_scraped(sink, rounds)
    finally:
        sink.close()
    count = args.containers * args.rounds
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    print(f"{args.containers} containers, {args.rounds} rounds of one sample each, "
          f"{len(scrape_times)} scrapes ({args.sink.__module__})")
    print(f"put     sink {count / put_s:12,.0f} samples/s   plain dict {count / plain_s:12,.0f} "
          f"samples/s   ratio {plain_s / put_s:.2f}")
    print(f"put while scraped back to back {count / busy_s:12,.0f} samples/s")
    print(f"scrape  best {min(scrape_times):.3f} s   median "
          f"{statistics.median(scrape_times):.3f} s   worst {max(scrape_times):.3f} s   "
          f"({len(body) / 1e6:.1f} MB, {series:,} series)")
    print(promtool_check(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
