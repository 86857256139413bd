"""Samples per second the InfluxDB and MongoDB sinks sustain, beside what the store takes.

For each database, in one run against the same real local server:

- **sink**: a synthetic stream fed to the sink object (``write`` → delivery buffer → writer
  thread → batches), timed until ``close`` returns with everything confirmed;
- **direct**: InfluxDB: a plain loop (``http.client``, no library) POSTing the same points as
  line protocol, built before the clock starts, uncompressed, in batches of the same size, one
  request after the other: what the store ingests when nothing else costs anything. MongoDB: a
  plain ``insert_many`` of the same documents in batches of the same size.

InfluxDB here is Debian's 1.x ``influxd`` (API v1 ``/write``); MongoDB is SecantusDB. Both are
started on 127.0.0.1 in a temporary directory and stopped at the end (the helpers of
``tests/support``), unless ``--influx-url`` / ``--mongo-uri`` point at running servers.
``--influx-sink module:Class`` measures another InfluxDB sink class (an older version saved
aside) in the same run. Not a test: it prints figures.

    .venv/bin/python bench/sink_throughput.py [--samples 20000] [--batch-size 1000]
"""

from __future__ import annotations

import argparse
import http.client
import importlib
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pymongo
import urllib3

from statspout.sinks.base import Sink
from statspout.sinks.influxdb import InfluxDBSink, line_protocol
from statspout.sinks.mongodb import MongoDBSink, to_document
from statspout.wire import ContainerStats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.influxd import running_influxd
from support.mongo import running_mongo

CONTAINERS = 50
LABEL_TAGS = ("com.docker.compose.project",)


def synthetic_stream(count: int) -> list[ContainerStats]:
    """``count`` samples round-robin over CONTAINERS containers, one second apart per container."""
    start = time.time_ns() - count * 1_000_000_000
    samples = []
    for n in range(count):
        container = n % CONTAINERS
        samples.append(ContainerStats(
            seq=n + 1, host="bench-host", id=f"{container:064x}", name=f"svc-{container}",
            image="nginx:1.27", labels={"com.docker.compose.project": "bench", "tier": "web"},
            timestamp=start + (n // CONTAINERS) * 1_000_000_000 + container,
            cpu_percent=12.5, cpu_usage_ns=n * 1000, online_cpus=4, mem_usage=50 * 2**20 + n,
            mem_limit=2**30, mem_percent=4.88, rx_bytes=n * 10, tx_bytes=n * 20, rx_packets=n,
            tx_packets=n, rx_errors=0, tx_errors=0, rx_dropped=0, tx_dropped=0,
            blk_read_bytes=n * 4096, blk_write_bytes=n * 8192, pids=7,
        ))
    return samples


def delivery_settings(batch_size: int, count: int, limit_s: float) -> dict[str, object]:
    return dict(buffer_size=count, batch_size=batch_size, flush_interval=0.2,
                close_timeout=limit_s, max_backoff=1.0, timeout=30.0)


def through_sink(sink: Sink, samples: list[ContainerStats], limit_s: float) -> float:
    sink.open()
    started = time.perf_counter()
    for sample in samples:
        sink.write(sample)
    sink.close()  # returns when the buffer is written, or after close-timeout (= limit_s)
    elapsed = time.perf_counter() - started
    counts = sink.counters()
    if counts["written"] != len(samples):
        raise SystemExit(f"{sink.name}: only {counts['written']} of {len(samples)} written "
                         f"within {limit_s} s: {dict(counts)}")
    return elapsed


def batched(samples: list[ContainerStats], size: int, limit_s: float
            ) -> Iterator[list[ContainerStats]]:
    deadline = time.perf_counter() + limit_s
    for start in range(0, len(samples), size):
        if time.perf_counter() > deadline:
            raise SystemExit(f"direct writes took longer than {limit_s} s; aborted")
        yield samples[start:start + size]


def influx_direct(url: str, database: str, samples: list[ContainerStats], size: int,
                  limit_s: float) -> float:
    bodies = [line_protocol(samples[start:start + size], LABEL_TAGS)
              for start in range(0, len(samples), size)]
    address = urllib3.util.parse_url(url)
    connection = http.client.HTTPConnection(address.host or "127.0.0.1", address.port or 8086)
    path = f"/write?db={database}&precision=ns"
    deadline = time.perf_counter() + limit_s
    started = time.perf_counter()
    for body in bodies:
        if time.perf_counter() > deadline:
            raise SystemExit(f"direct writes took longer than {limit_s} s; aborted")
        connection.request("POST", path, body=body)
        response = connection.getresponse()
        data = response.read()
        if response.status != 204:
            raise SystemExit(f"direct influx write failed: {response.status} {data!r}")
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def influx_count(url: str, database: str) -> int:
    http = urllib3.PoolManager()
    response = http.request("POST", f"{url}/query", fields={
        "db": database, "q": "SELECT count(usage_total) FROM docker_container_cpu"})
    series = response.json()["results"][0].get("series", [])
    return series[0]["values"][0][1] if series else 0


def create_database(url: str, database: str) -> None:
    urllib3.PoolManager().request(
        "POST", f"{url}/query", fields={"q": f"CREATE DATABASE {database}"}
    )


def mongo_direct(uri: str, collection: str, samples: list[ContainerStats], size: int,
                 limit_s: float) -> float:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri)
    with client:
        target = client.bench[collection]
        # The index the sink creates at start, so that both pay for the same index upkeep.
        target.create_index([("name", pymongo.ASCENDING), ("timestamp", pymongo.ASCENDING)])
        started = time.perf_counter()
        for batch in batched(samples, size, limit_s):
            target.insert_many([to_document(s) for s in batch], ordered=False)
        return time.perf_counter() - started


def mongo_count(uri: str, collection: str) -> int:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri)
    with client:
        return client.bench[collection].count_documents({})


@contextmanager
def server(url: str | None, start: Callable) -> Iterator[str]:
    if url:
        yield url
        return
    with start() as running:
        yield getattr(running, "url", None) or running.uri


def influx_round(url: str, samples: list[ContainerStats], args: argparse.Namespace,
                 common: dict[str, object]) -> tuple[float, float]:
    """One round into two fresh databases: (sink seconds, direct seconds)."""
    run = uuid.uuid4().hex[:8]
    for database in (f"direct_{run}", f"sink_{run}"):
        create_database(url, database)
    direct_s = influx_direct(url, f"direct_{run}", samples, args.batch_size, args.limit)
    sink = args.influx_sink(SimpleNamespace(
        api="v1", url=url, token="", org="", bucket="", database=f"sink_{run}",
        retention_policy="", username="", password="", label_tags=[],
        label_include=list(LABEL_TAGS), label_exclude=[], **common))
    sink_s = through_sink(sink, samples, args.limit)
    stored = influx_count(url, f"sink_{run}"), influx_count(url, f"direct_{run}")
    if stored != (len(samples), len(samples)):
        raise SystemExit(f"influxdb stored {stored}, expected {len(samples)} each")
    return sink_s, direct_s


def mongo_round(uri: str, samples: list[ContainerStats], args: argparse.Namespace,
                common: dict[str, object]) -> tuple[float, float]:
    """One round into two fresh collections: (sink seconds, direct seconds)."""
    run = uuid.uuid4().hex[:8]
    direct_s = mongo_direct(uri, f"direct_{run}", samples, args.batch_size, args.limit)
    sink = MongoDBSink(SimpleNamespace(
        uri=uri, database="bench", collection=f"sink_{run}", ttl=0, **common))
    sink_s = through_sink(sink, samples, args.limit)
    stored = mongo_count(uri, f"sink_{run}"), mongo_count(uri, f"direct_{run}")
    if stored != (len(samples), len(samples)):
        raise SystemExit(f"mongodb stored {stored}, expected {len(samples)} each")
    return sink_s, direct_s


def report(name: str, count: int, per_sample: int, unit: str,
           times: list[tuple[float, float]]) -> None:
    sink_rate = count / min(t[0] for t in times)
    direct_rate = count / min(t[1] for t in times)
    rounds = ", ".join(f"{count / s:,.0f}/{count / d:,.0f}" for s, d in times)
    for path, rate in (("sink", sink_rate), ("direct", direct_rate)):
        print(f"{name:9} {path:6} {rate:10,.0f} samples/s  ({rate * per_sample:10,.0f} {unit}/s)")
    print(f"{name:9} ratio sink/direct = {sink_rate / direct_rate:.2f}   "
          f"(samples/s per round, sink/direct: {rounds})")


def sink_class(text: str) -> type[Sink]:
    """``module:Class``, the module found on the path (bench/ first)."""
    module, _, name = text.partition(":")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    found: type[Sink] = getattr(importlib.import_module(module), name)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000, help="samples per measurement")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--limit", type=float, default=120.0,
                        help="seconds one measurement may take before the run is aborted")
    parser.add_argument("--influx-url",
                        help="use this running InfluxDB 1.x instead of starting one")
    parser.add_argument("--mongo-uri", help="use this running MongoDB instead of starting one")
    parser.add_argument("--influx-sink", type=sink_class, default=InfluxDBSink,
                        help="module:Class of the InfluxDB sink to measure (default: ours)")
    parser.add_argument("--only", choices=("influxdb", "mongodb"))
    parser.add_argument("--repeat", type=int, default=3, choices=range(1, 11), metavar="1-10",
                        help="rounds per database; the best of each path is reported")
    args = parser.parse_args()
    count = min(args.samples, 1_000_000)  # bounded: the stream is held in memory
    samples = synthetic_stream(count)
    common = delivery_settings(args.batch_size, count, args.limit)
    print(f"{count} synthetic samples over {CONTAINERS} containers, batches of "
          f"{args.batch_size}, best of {args.repeat} rounds")

    with ExitStack() as stack:
        if args.only in (None, "influxdb"):
            url = stack.enter_context(server(args.influx_url, running_influxd))
            times = [influx_round(url, samples, args, common) for _ in range(args.repeat)]
            report("influxdb", count, 4, "points", times)
        if args.only in (None, "mongodb"):
            uri = stack.enter_context(server(args.mongo_uri, running_mongo))
            times = [mongo_round(uri, samples, args, common) for _ in range(args.repeat)]
            report("mongodb", count, 1, "docs", times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
