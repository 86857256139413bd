"""Hosts as network namespaces, and synthetic collectors to run on them.

``Lan`` makes namespaces joined by one bridge (itself in a namespace of its own), with
addresses 10.250.0.0/24 that exist only inside them, and removes everything on exit, even after
a failure. ``synthetic_sample`` and the ``publish`` program stand in for a collector when no
Docker engine is wanted: they publish through ``bus.CollectorPublisher`` like the real one.

    python -c 'from support.netns import publish_main; publish_main()' --connect ... --host ...
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import zmq

from statspout import bus, security, wire

SUBNET = "10.250.0"
TESTS = Path(__file__).resolve().parents[1]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    probe = f"sp{os.getpid()}probe"
    try:
        result = _ip("netns", "add", probe, check=False)
    except FileNotFoundError:
        return "iproute2 (ip) is not installed"
    if result.returncode != 0:
        return f"'ip netns add' is not permitted: {result.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class Lan:
    """``hosts`` namespaces on one bridged /24; ``address(name)`` is a host's only address."""

    def __init__(self, hosts: list[str]) -> None:
        tag = f"sp{os.getpid() % 100000}"
        self.bridge_ns = f"{tag}-lan"
        self.namespaces = {host: f"{tag}-{host}" for host in hosts}
        self.addresses = {host: f"{SUBNET}.{10 + i}" for i, host in enumerate(hosts)}
        self._made: list[str] = []

    def __enter__(self) -> Lan:
        try:
            self._make()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _make(self) -> None:
        _ip("netns", "add", self.bridge_ns)
        self._made.append(self.bridge_ns)
        _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        for i, (host, ns) in enumerate(self.namespaces.items()):
            _ip("netns", "add", ns)
            self._made.append(ns)
            # The veth pair is made inside the bridge's namespace and one end moved to the
            # host's: nothing ever touches the machine's own network.
            _ip("-n", self.bridge_ns, "link", "add", f"v{i}", "type", "veth",
                "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.bridge_ns, "link", "set", f"v{i}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{self.addresses[host]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def remove(self) -> None:
        for ns in reversed(self._made):
            # Deleting a namespace whose processes are gone frees its veth ends too.
            _ip("netns", "del", ns, check=False)
        self._made.clear()

    def exec_argv(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` run in ``host``'s namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.namespaces[host], *argv]


def synthetic_sample(
    seq: int, host: str, name: str, labels: dict[str, str] | None = None, image: str = "busybox"
) -> wire.ContainerStats:
    return wire.ContainerStats(
        seq=seq, host=host, id=f"{host}-{name}-id", name=name, image=image, labels=labels or {},
        timestamp=time.time_ns(), cpu_percent=1.5, cpu_usage_ns=seq * 1000, online_cpus=2,
        mem_usage=1 << 20, mem_limit=1 << 30, mem_percent=0.1, rx_bytes=seq, tx_bytes=seq,
        rx_packets=0, tx_packets=0, rx_errors=0, tx_errors=0, rx_dropped=0, tx_dropped=0,
        blk_read_bytes=0, blk_write_bytes=0, pids=1,
    )


def publish_main() -> None:
    """A synthetic collector process: every interval one sample per container name."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--connect", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--names", default="c1")
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--max-seconds", type=float, default=120)  # never outlives a test
    parser.add_argument("--curve-secret-key")
    parser.add_argument("--curve-server-key")
    args = parser.parse_args()
    keys = None
    if args.curve_secret_key:
        keys = security.ClientKeys(security.load_key_pair(args.curve_secret_key),
                                   security.load_public_key(args.curve_server_key))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    context = zmq.Context()
    publisher = bus.CollectorPublisher(context, args.connect, security=keys)
    seq, deadline = 0, time.monotonic() + args.max_seconds
    while not stop.is_set() and time.monotonic() < deadline:
        for name in args.names.split(","):
            seq += 1
            publisher.publish(wire.encode(synthetic_sample(seq, args.host, name)))
        stop.wait(args.interval)
    print(f"sent={publisher.counts.sent} no_subscriber={publisher.counts.dropped_no_subscriber}",
          flush=True)
    publisher.close()
    context.term()


def publish_argv(connect: str, host: str, **options: str) -> list[str]:
    """The command line of a synthetic collector process."""
    argv = [sys.executable, "-c", "from support.netns import publish_main; publish_main()",
            "--connect", connect, "--host", host]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", value]
    return argv


PUBLISH_ENV = {"PYTHONPATH": str(TESTS)}
