"""statspout-top at 2,000 containers: its redraw time and CPU, beside a REST sink (the
baseline: a worker that only receives, decodes and keeps the latest sample) on the same route,
in one run.

Four synthetic collectors (processes, hosts node-0…node-3) publish 500 containers each, one
sample per container every second, through a real ``statspout-router`` process: 2,000
messages a second. ``statspout-top`` runs in a real terminal (tmux, 80×24) with its default
refresh of one second; after a warm-up, the CPU time of both processes is read from /proc over
--seconds; then ``q`` ends statspout-top and its log line gives the redraw times (snapshot,
filter, sort, lay out: what one refresh costs beyond Textual's drawing of 24 lines).

    .venv/bin/python bench/top_scale.py [--containers 2000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import zmq

from statspout import bus, wire

BIN = Path(sys.executable).parent
HOSTS = 4
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def collector(endpoint: str, host: str, containers: int, stop: EventType) -> None:
    """One synthetic collector: every container sampled once a second, real wire messages."""
    context = zmq.Context()
    publisher = bus.CollectorPublisher(context, endpoint)
    seq = 0
    tick = 0
    while not stop.is_set():
        started = time.monotonic()
        for index in range(containers):
            seq += 1
            publisher.publish(wire.encode(wire.ContainerStats(
                seq=seq, host=host, id=f"{host}-{index:04d}", name=f"app-{index:04d}",
                image="registry.local/app:1", labels={"tier": "web" if index % 2 else "db"},
                timestamp=time.time_ns(), cpu_percent=(index * 7 + tick) % 1000 / 10,
                cpu_usage_ns=tick * 10**9, online_cpus=8, mem_usage=(index + 1) << 20,
                mem_limit=8 << 30, mem_percent=(index + 1) / 8192 * 100,
                rx_bytes=tick * 1500, tx_bytes=tick * 900, rx_packets=tick, tx_packets=tick,
                rx_errors=0, tx_errors=0, rx_dropped=0, tx_dropped=0,
                blk_read_bytes=4096 * index, blk_write_bytes=8192, pids=1 + index % 30,
            )))
        tick += 1
        stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))
    publisher.close()
    context.term()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime + stime


def tmux(socket_name: str, *args: str) -> str:
    return subprocess.run(["tmux", "-u", "-L", socket_name, "-f", "/dev/null", *args],
                          check=True, capture_output=True, text=True,
                          env={**os.environ, "LANG": "C.UTF-8"}).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warm-up", type=float, default=10.0)
    args = parser.parse_args()

    listen, publish = free_endpoint(), free_endpoint()
    work = Path(tempfile.mkdtemp(prefix="statspout-top-bench-"))
    control = f"ipc://{work}/router.ctl"
    router = subprocess.Popen([str(BIN / "statspout-router"), "--listen", listen, "--publish",
                               publish, "--control", control],
                              stderr=open(work / "router.log", "w"))
    rest_port = free_endpoint().rsplit(":", 1)[1]
    rest = subprocess.Popen([str(BIN / "statspout-sink"), "rest", "--connect", publish,
                             "--rest.address", f"127.0.0.1:{rest_port}"],
                            stderr=open(work / "rest.log", "w"))
    top_log = work / "top.log"
    socket_name = f"statspout-top-bench-{os.getpid()}"
    top_argv = [str(BIN / "statspout-top"), "--connect", publish, "--interval", "1",
                "--log-file", str(top_log), "--log-level", "info"]
    tmux(socket_name, "new-session", "-d", "-s", "top", "-x", "80", "-y", "24",
         "exec " + shlex.join(top_argv))
    top_pid = int(tmux(socket_name, "display-message", "-p", "-t", "top", "#{pane_pid}"))

    stop = mp.Event()
    per_host = args.containers // HOSTS
    collectors = [mp.Process(target=collector, args=(listen, f"node-{n}", per_host, stop))
                  for n in range(HOSTS)]
    for process in collectors:
        process.start()
    try:
        time.sleep(args.warm_up)  # a benchmark's steady state, not a test's wait
        before = {"top": cpu_seconds(top_pid), "rest": cpu_seconds(rest.pid)}
        started = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - started
        after = {"top": cpu_seconds(top_pid), "rest": cpu_seconds(rest.pid)}
        screen = tmux(socket_name, "capture-pane", "-p", "-t", "top")
        tmux(socket_name, "send-keys", "-t", "top", "q")
        deadline = time.monotonic() + 10
        while "redraws=" not in top_log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for collector_process in collectors:
            collector_process.join(10)
        subprocess.run(["tmux", "-L", socket_name, "kill-server"], capture_output=True)
        Path(os.environ.get("TMUX_TMPDIR", "/tmp"), f"tmux-{os.getuid()}",
             socket_name).unlink(missing_ok=True)
        for server in (rest, router):
            server.terminate()
            server.wait(10)

    cpu = {name: (after[name] - before[name]) / elapsed * 100 for name in before}
    redraws = re.findall(r"redraws=(\d+) mean_ms=([\d.]+) max_ms=([\d.]+)", top_log.read_text())
    report = re.findall(r"received=(\d+).*?gaps=(\d+).*?containers=(\d+)", top_log.read_text())
    print(f"{args.containers} containers ({HOSTS} hosts × {per_host}), 1 sample/s each; "
          f"{elapsed:.0f} s measured after {args.warm_up:.0f} s warm-up")
    print(f"CPU: statspout-top {cpu['top']:.1f} % | rest sink (baseline) {cpu['rest']:.1f} % | "
          f"top/rest {cpu['top'] / cpu['rest']:.2f}")
    if redraws:
        count, mean_ms, max_ms = redraws[-1]
        print(f"redraw (snapshot+filter+sort+layout): {count} redraws, mean {mean_ms} ms, "
              f"max {max_ms} ms")
    if report:
        received, gaps, containers = report[-1]
        print(f"statspout-top received {received} messages, gaps {gaps}, containers {containers}")
    print("screen at the end:")
    print(screen.rstrip())


if __name__ == "__main__":
    main()
