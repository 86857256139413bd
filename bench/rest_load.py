"""Requests per second and latency of the REST sink under many clients on fresh connections.

The sink runs in a child process of its own (so that the load generator does not share its
interpreter), with its table filled directly with ``--containers`` synthetic samples, each
replaced by a new one once a second (as a collector at a 1 s interval does). The load
generator runs ``--clients`` clients for ``--seconds`` seconds, spread over ``--processes``
processes (so that the clients' own Python does not become the bottleneck it measures), each
sending ``GET PATH`` on a new TCP connection per request (``Connection: close``) and reading the
answer to its end; a request that does not finish within ``--timeout`` seconds counts as a
time-out. Latency runs from the connect to the last byte of the answer. Everything is on
127.0.0.1, bounded in clients and time. Not a test: it prints figures as one JSON line.

    .venv/bin/python bench/rest_load.py [--clients 50] [--seconds 20] [--containers 50]

``--sink module:Class`` measures another sink class with the same options (for a before/after
comparison, e.g. the previous ``http.server`` sink saved under another module name).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import multiprocessing
import multiprocessing.synchronize
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.ports import free_port
from support.samples import make_container_stats


def serve(sink_class: str, port: int, containers: int, ready: multiprocessing.synchronize.Event,
          stop: multiprocessing.synchronize.Event) -> None:
    """The sink process: the sink with ``containers`` samples in its table."""
    module, _, name = sink_class.partition(":")
    cls = getattr(importlib.import_module(module), name)
    settings = SimpleNamespace(**{option.attribute: option.default for option in cls.options})
    settings.address = f"127.0.0.1:{port}"
    sink = cls(settings)

    def write(n: int, seq: int) -> None:
        sink.write(make_container_stats(f"{n:064x}", seq=seq, name=f"svc-{n}", labels={
            "com.docker.compose.project": "bench", "tier": "web"}, pids=seq % 100))

    for n in range(containers):
        write(n, 1)
    sink.open()
    ready.set()
    # As a collector at a 1 s interval would: every container's sample replaced once a second,
    # spread over the second (so the table changes ``containers`` times a second).
    seq = 1
    while not stop.is_set():
        seq += 1
        for n in range(containers):
            write(n, seq)
            if stop.wait(1.0 / containers):
                break
    sink.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_request(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                     .encode())
        status_line = await reader.readline()
        await reader.read()  # to the end: the server closes after the answer
        return int(status_line.split()[1])
    finally:
        writer.close()


async def client(port: int, path: str, deadline: float, timeout: float,
                 latencies: list[float], failures: dict[str, int]) -> None:
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            status = await asyncio.wait_for(one_request(port, path), timeout)
        except asyncio.TimeoutError:
            failures["timeouts"] += 1
            continue
        except (OSError, ValueError, IndexError) as exc:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            await asyncio.sleep(0.01)  # a refused connect must not spin
            continue
        if status != 200:
            failures[f"http_{status}"] = failures.get(f"http_{status}", 0) + 1
            continue
        latencies.append(time.monotonic() - started)


async def load(port: int, path: str, clients: int, deadline: float, timeout: float
               ) -> tuple[list[float], dict[str, int]]:
    latencies: list[float] = []
    failures: dict[str, int] = {"timeouts": 0}
    await asyncio.gather(*(client(port, path, deadline, timeout, latencies, failures)
                           for _ in range(clients)))
    return latencies, failures


def load_process(args: tuple[int, str, int, float, float]) -> tuple[list[float], dict[str, int]]:
    """One load process: its share of the clients until the common deadline (wall clock, so
    that every process stops at the same moment)."""
    port, path, clients, wall_deadline, timeout = args
    deadline = time.monotonic() + (wall_deadline - time.time())
    return asyncio.run(load(port, path, clients, deadline, timeout))


def run_load(port: int, path: str, clients: int, processes: int, seconds: float,
             timeout: float) -> dict:
    shares = [clients // processes + (n < clients % processes) for n in range(processes)]
    started = time.monotonic()
    wall_deadline = time.time() + seconds
    with multiprocessing.Pool(processes) as pool:
        results = pool.map(load_process, [(port, path, share, wall_deadline, timeout)
                                          for share in shares if share])
    elapsed = time.monotonic() - started
    latencies = sorted(latency for result, _ in results for latency in result)
    failures: dict[str, int] = {}
    for _, counted in results:
        for kind, count in counted.items():
            failures[kind] = failures.get(kind, 0) + count

    def percentile(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1) \
            if latencies else float("nan")

    return {"requests_ok": len(latencies), "requests_per_s": round(len(latencies) / elapsed, 1),
            "errors": sum(failures.values()), "failures": failures,
            "p50_ms": percentile(0.50), "p99_ms": percentile(0.99), "max_ms": percentile(1.0),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
            "elapsed_s": round(elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--processes", type=int, default=2, help="load processes")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--path", default="/stats")
    parser.add_argument("--timeout", type=float, default=5.0, help="per request, seconds")
    parser.add_argument("--sink", default="statspout.sinks.rest:RestSink")
    args = parser.parse_args()
    if not (1 <= args.clients <= 500 and 0 < args.seconds <= 120 and 1 <= args.processes <= 8):
        parser.error("--clients must be 1..500, --seconds 0..120 and --processes 1..8 "
                     "(a bounded load)")

    port = free_port()
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    server = multiprocessing.Process(
        target=serve, args=(args.sink, port, args.containers, ready, stop))
    server.start()
    try:
        if not ready.wait(30):
            sys.exit("the REST sink did not start within 30 s")
        assert server.pid is not None
        cpu_before = cpu_seconds(server.pid)
        figures = run_load(port, args.path, args.clients, args.processes, args.seconds,
                           args.timeout)
        figures["sink_cpu_s"] = round(cpu_seconds(server.pid) - cpu_before, 2)
    finally:
        stop.set()
        server.join(10)
        if server.is_alive():
            server.kill()
    print(json.dumps({"sink": args.sink, "clients": args.clients, "processes": args.processes,
                      "seconds": args.seconds, "containers": args.containers, "path": args.path,
                      **figures}))


if __name__ == "__main__":
    main()
