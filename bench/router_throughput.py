"""Samples per second through the router, beside a plain pyzmq PUB→SUB hop, in one run.

Two synthetic collectors (processes) send COUNT samples each, as fast as they can, with varied
names, images, hosts and labels: one message per sample (wire 1.1), and again in batches of
--batch samples (wire 1.2, as the collector publishes a cycle). Through the router every
message is decoded (a batch: its envelope and container entries), matched against 10 routes
(``all`` and nine from a routes table) and forwarded; a consumer subscribed to ``all`` counts
the samples that arrive. The plain hop sends the same payloads from the same two processes
straight to a SUB socket. All run again with CURVE on every link. Queues are unbounded for the
run (nothing is dropped); the run stops at COUNT or at --deadline seconds. Beside the rates
(wall clock), the router's CPU time over the run gives its samples per CPU second: what one
core of its own would carry, the figure to read on a machine shared with other work.

    .venv/bin/python bench/router_throughput.py [--count 50000] [--batch 200] [--deadline 60]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import tempfile
import time
from pathlib import Path

import msgpack
import zmq
import zmq.auth

from statspout import bus, security, wire
from statspout.collector.batching import BatchingPublisher
from statspout.router.loop import Router
from statspout.router.replay import ReplayLimits, ReplayStore
from statspout.router.route_table import RouteTable
from statspout.router.routes_file import parse_routes

ROUTES = parse_routes({"routes": {
    "prod": {"include": ["label=env=prod"], "exclude": ["name=*-debug"]},
    "staging": {"include": ["label=env=staging"]},
    "batch": {"include": ["image=registry.local/batch/*", "label=tier=batch"]},
    "web": {"include": ["name=web-*"]},
    "db": {"include": ["name=db-*", "image=postgres*"]},
    "host-b": {"include": ["host=host-b"]},
    "not-ops": {"include": ["label=team!=ops"]},
    "monitored": {"include": ["label=monitor"], "exclude": ["label=env=dev"]},
    "gpu": {"include": ["label=gpu=true"]},
}})
UNBOUNDED = 0  # ZeroMQ: no high-water mark


def payloads(host: str, count: int) -> list[bytes]:
    """``count`` samples of 50 containers with a spread of labels, images and names."""
    kinds = [("web", "nginx:1", {"env": "prod", "team": "web", "monitor": "1"}),
             ("db", "postgres:16", {"env": "prod", "team": "ops"}),
             ("etl", "registry.local/batch/etl", {"tier": "batch", "env": "staging"}),
             ("web", "nginx:1", {"env": "dev", "monitor": "1"}),
             ("ml", "trainer", {"gpu": "true", "env": "staging"})]
    encoded = []
    for seq in range(1, count + 1):
        prefix, image, labels = kinds[seq % len(kinds)]
        sample = wire.ContainerStats(
            seq=seq, host=host, id=f"{host}-{seq % 50}", name=f"{prefix}-{seq % 50}",
            image=image, labels={**labels, "com.docker.compose.project": "bench"},
            timestamp=time.time_ns(), cpu_percent=12.5, cpu_usage_ns=seq * 10_000,
            online_cpus=8, mem_usage=50 << 20, mem_limit=8 << 30, mem_percent=0.6,
            rx_bytes=seq * 1500, tx_bytes=seq * 900, rx_packets=seq, tx_packets=seq,
            rx_errors=0, tx_errors=0, rx_dropped=0, tx_dropped=0, blk_read_bytes=4096,
            blk_write_bytes=8192, pids=12,
        )
        encoded.append(wire.encode(sample))
    return encoded


def batched(host: str, count: int, size: int) -> list[tuple[bytes, int]]:
    """The samples of ``payloads`` as a collector batches them: (payload, samples)."""
    out: list[tuple[bytes, int]] = []

    class Keep:
        counts = bus.PublishCounts()

        def publish(self, payload: bytes, messages: int = 1) -> bool:
            out.append((payload, messages))
            return True

    batcher = BatchingPublisher(Keep(), host, max_items=size)
    for payload in payloads(host, count):
        message = wire.decode(payload)
        batcher.add(message)
    batcher.flush()
    return out


def samples_in(payload: bytes) -> int:
    """1 for a single message, the items of a batch."""
    raw = msgpack.unpackb(payload)
    return len(raw["items"]) if raw.get("kind") == "batch" else 1


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def client_keys(keys: Path | None, name: str) -> security.ClientKeys | None:
    if keys is None:
        return None
    return security.ClientKeys(security.load_key_pair(keys / f"{name}.key_secret"),
                               security.load_public_key(keys / "router.key"))


def collector(endpoint: str, host: str, count: int, batch: int, keys: Path | None, ready,
              go) -> None:
    """A collector's socket (bus.CollectorPublisher's XPUB) with unbounded queues."""
    context = zmq.Context()
    publisher = bus.CollectorPublisher(context, endpoint, UNBOUNDED, client_keys(keys, host))
    messages = batched(host, count, batch) if batch > 1 else \
        [(payload, 1) for payload in payloads(host, count)]
    # Until the receiver has subscribed; this probe is not counted (the receiver drains it).
    while publisher.publish(payloads("probe", 1)[0]) is False:
        time.sleep(0.01)
    ready.release()
    go.wait()
    for payload, samples in messages:
        publisher.publish(payload, samples)
    publisher.close()
    context.term()


def router_process(listen: str, publish: str, keys: Path | None, stop) -> None:
    context = zmq.Context()
    server = None
    if keys is not None:
        server = security.start_server_security(context, keys / "router.key_secret", keys)
    # As statspout-router runs it: every forwarded message is kept for replay too.
    router = Router(bus.router_input(context, listen, UNBOUNDED, server),
                    bus.router_output(context, publish, UNBOUNDED, server),
                    RouteTable(routes=ROUTES), report_interval=3600,
                    is_authorized=server.authenticator.is_authorized if server else None,
                    run_id=1, replay=ReplayStore(1, ReplayLimits()))
    router.run(stop)
    if server is not None:
        server.authenticator.stop()
    context.destroy(linger=0)


def plain_hop_receiver(context: zmq.Context, endpoint: str, keys: Path | None) -> zmq.Socket:
    """The plain hop: a bare SUB bound where the collectors connect."""
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, UNBOUNDED)
    if keys is not None:
        pair = security.load_key_pair(keys / "router.key_secret")
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, pair.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, pair.public)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.bind(endpoint)
    return sock


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    through_router: bool, count: int, batch: int, deadline: float, keys: Path | None
) -> tuple[int, float, float]:
    """(samples received, seconds from the go signal to the last one, CPU seconds the router
    used meanwhile: 0 for the plain hop)."""
    context = zmq.Context()
    listen = free_endpoint()
    stop, processes = mp.Event(), []
    if through_router:
        publish = free_endpoint()
        processes.append(mp.Process(target=router_process, args=(listen, publish, keys, stop)))
        processes[0].start()
        receiver = bus.sink_subscriber(context, publish, bus.DEFAULT_ROUTE, UNBOUNDED,
                                       client_keys(keys, "consumer"))
        probe = bus.CollectorPublisher(context, listen, security=client_keys(keys, "probe"))
        limit = time.monotonic() + 30
        while not receiver.poll(50):  # the router is up and our subscription reached it
            probe.publish(payloads("probe", 1)[0])
            if time.monotonic() > limit:
                raise SystemExit("the router did not start")
        probe.close()
        while receiver.poll(200):
            receiver.recv_multipart()
    else:
        receiver = plain_hop_receiver(context, listen, keys)
    ready, go = mp.Semaphore(0), mp.Event()
    for host in ("host-a", "host-b"):
        proc = mp.Process(target=collector, args=(listen, host, count, batch, keys, ready, go))
        proc.start()
        processes.append(proc)
    received, expected = 0, 2 * count
    # The receiver must be polled while the collectors connect: a ZeroMQ socket attaches new
    # peers (and sends them its subscription) only when its own thread calls into it.
    connected, limit = 0, time.monotonic() + 30
    while connected < 2:
        if receiver.poll(20):
            receiver.recv_multipart()
        if ready.acquire(timeout=0.01):
            connected += 1
        if time.monotonic() > limit:
            raise SystemExit("a collector never connected")
    while receiver.poll(200):  # the payloads the collectors sent to find their subscriber
        receiver.recv_multipart()
    router_pid = processes[0].pid if through_router else None
    router_cpu = cpu_seconds(router_pid) if router_pid is not None else 0.0
    go.set()
    start = last = time.perf_counter()
    end_by = time.monotonic() + deadline
    while received < expected and time.monotonic() < end_by:
        if receiver.poll(1000):
            received += samples_in(receiver.recv_multipart()[-1])
            last = time.perf_counter()
    if router_pid is not None:
        router_cpu = cpu_seconds(router_pid) - router_cpu
    stop.set()
    for proc in processes:
        proc.join(30)
        if proc.is_alive():
            proc.terminate()
    receiver.close()
    context.destroy(linger=0)
    return received, last - start, router_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000, help="samples per collector")
    parser.add_argument("--batch", type=int, default=200, help="samples per batch")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds per measurement")
    args = parser.parse_args()
    mp.set_start_method("spawn")  # no ZeroMQ context crosses a fork
    with tempfile.TemporaryDirectory() as folder:
        keys = Path(folder)
        for name in ("router", "host-a", "host-b", "consumer", "probe"):
            zmq.auth.create_certificates(keys, name)
        print(f"{2 * args.count} samples (2 collectors × {args.count}), 10 routes; one sample "
              f"{len(payloads('host-a', 1)[0])} bytes; batches of {args.batch} "
              f"{len(batched('host-a', args.batch, args.batch)[0][0])} bytes")
        print("| links | input | PUB→SUB hop, samples/s | router, samples/s | router / hop of "
              "single samples | router / hop of the same frames | router, samples per CPU "
              "second |")
        print("|---|---|---|---|---|---|---|")
        for label, key_dir in (("plain", None), ("CURVE", keys)):
            single_hop = rate(measure(False, args.count, 1, args.deadline, key_dir))
            for name, batch in (("one sample a message", 1), (f"batches of {args.batch}",
                                                              args.batch)):
                hop = rate(measure(False, args.count, batch, args.deadline, key_dir)) \
                    if batch > 1 else single_hop
                received, seconds, cpu = measure(True, args.count, batch, args.deadline,
                                                 key_dir)
                routed = rate((received, seconds, cpu))
                per_cpu = received / cpu if cpu > 0 else 0.0
                print(f"| {label} | {name} | {hop:,.0f} | {routed:,.0f} | "
                      f"{routed / single_hop:.2f} | {routed / hop:.2f} | {per_cpu:,.0f} |",
                      flush=True)


def rate(measured: tuple[int, float, float]) -> float:
    received, seconds, _ = measured
    return received / seconds if seconds > 0 else 0.0


if __name__ == "__main__":
    main()
