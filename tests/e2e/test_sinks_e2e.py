"""End to end into every store: real containers → collector → router → the InfluxDB, MongoDB,
Prometheus and REST sinks (each its own process, against real servers), and what each store
holds matches the collector's samples, seen at the same time through the JSON stdout sink.

Docker allows only [a-zA-Z0-9_.-] in container names; labels take any text, so a label carries
the spaces, commas, quotes, equals signs, backslashes and non-ASCII text."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import requests
from support.influxd import running_influxd
from support.mongo import running_mongo
from support.ports import free_port
from support.processes import Pipeline, Process, program
from support.prometheus_server import prometheus_server
from support.waiting import wait_for

from statspout.sinks.influxdb import telegraf_mem_usage

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

TRICKY = 'naïve "quoted", key=value \\ 日本'


def sink(name: str, publish: str, *options: str) -> Process:
    return Process([program("statspout-sink"), name, "--connect", publish, *options])


def test_every_sink_stores_what_the_collector_sampled(make_container, endpoints, run_id):
    name = f"tricky-{run_id}"
    container = make_container("sleep 3600", name=name, labels={"env": TRICKY})
    prometheus_port, rest_port = free_port(), free_port()
    _, publish = endpoints
    with running_influxd() as influx, running_mongo() as mongo, \
            prometheus_server([f"127.0.0.1:{prometheus_port}"]) as prometheus, \
            Pipeline(endpoints, run_id, collector_args=["--source", "api"]) as pipeline:
        influx.create_database("e2e")
        sinks = [
            sink("influxdb", publish, "--influxdb.api", "v1", "--influxdb.url", influx.url,
                 "--influxdb.database", "e2e", "--influxdb.label-include", "env"),
            sink("mongodb", publish, "--mongodb.uri", mongo.uri, "--mongodb.database", "e2e"),
            sink("prometheus", publish, "--prometheus.address", f"127.0.0.1:{prometheus_port}",
                 "--prometheus.label-include", "env"),
            sink("rest", publish, "--rest.address", f"127.0.0.1:{rest_port}"),
        ]
        try:
            wait_for(lambda: len(pipeline.samples(name)) >= 4, 30, "four samples of the container")
            sample = pipeline.samples(name)[2]  # one every sink was subscribed for

            rows = wait_for(lambda: influx.rows(
                f"SELECT * FROM docker_container_mem WHERE time = {sample['timestamp']}", "e2e"),
                15, "the sample in InfluxDB")
            # Telegraf's usage: the cgroup's, page cache excluded its way
            assert rows[0]["usage"] == telegraf_mem_usage(sample["mem_cgroup_usage"],
                                                          sample["mem_stat"])
            assert rows[0]["limit"] == sample["mem_limit"]
            assert rows[0]["usage_percent"] == pytest.approx(
                rows[0]["usage"] / sample["mem_limit"] * 100)
            assert (rows[0]["container_name"], rows[0]["container_id"]) == (name, container.id)
            assert rows[0]["env"] == TRICKY and rows[0]["engine_host"] == "e2e-host"
            cpu = influx.rows(
                f"SELECT * FROM docker_container_cpu WHERE time = {sample['timestamp']}", "e2e")
            assert cpu[0]["usage_total"] == sample["cpu_usage_ns"]

            with mongo.client() as client:
                stored = wait_for(lambda: client.e2e.stats.find_one(
                    {"name": name, "timestamp_ns": sample["timestamp"]}), 15,
                    "the sample in MongoDB")
            assert {k: stored[k] for k in ("id", "host", "image", "mem_usage", "rx_bytes",
                                           "cpu_usage_ns", "pids", "seq")} == {
                k: sample[k] for k in ("id", "host", "image", "mem_usage", "rx_bytes",
                                       "cpu_usage_ns", "pids", "seq")}
            assert {"key": "env", "value": TRICKY} in stored["labels"]

            latest = requests.get(f"http://127.0.0.1:{rest_port}/stats/{quote(name)}",
                                  timeout=5).json()
            # The stdout sink writes its lines at its flush, about a second after REST has them.
            assert latest == wait_for(
                lambda: next((s for s in pipeline.samples(name) if s["seq"] == latest["seq"]),
                             None), 10, "the REST sink's latest sample in the stdout sink")

            series = prometheus.wait_for(
                f'container_cpu_usage_seconds_total{{name="{name}"}}', bool, 30)
            assert series[0]["metric"]["container_label_env"] == TRICKY
            assert series[0]["metric"]["id"] == container.id
            seconds = float(series[0]["value"][1])
            assert seconds in {s["cpu_usage_ns"] / 1e9 for s in pipeline.samples(name)}
        finally:
            for process in sinks:
                assert process.stop() == 0, process.log()
        for process in sinks:
            assert "sink_errors=0" in process.log() and "malformed=0" in process.log()
