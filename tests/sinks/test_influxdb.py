"""The InfluxDB sink: API v1 against a real influxd (Debian's 1.x), API v2 against a local
HTTP endpoint that records what it is sent (no InfluxDB 2 server can be installed here)."""

from __future__ import annotations

import http.server
import logging
import shlex
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import urllib3
from support.feed import RouterFeed, SinkWorkerThread
from support.influxd import InfluxServer, running_influxd
from support.processes import Process, program
from support.samples import make_series_stats
from support.waiting import wait_for

from statspout.sinks.influxdb import InfluxDBSink, WriteRefused, classify, line_protocol

TRICKY_NAME = 'web 1, "shop"=eu \\ back ñ€ 名前'
TEAM = "com.example.team"
PROJECT = "com.docker.compose.project"
TRICKY_LABELS = {TEAM: 'ops, "blue"=1 \\ é', PROJECT: "shop", "unlisted": "not a tag"}
REPOSITORY = Path(__file__).resolve().parents[2]
MEASUREMENTS = ["docker_container_blkio", "docker_container_cpu", "docker_container_mem",
                "docker_container_net"]


make_sample = partial(make_series_stats, name=TRICKY_NAME, labels=TRICKY_LABELS)


def settings(**overrides: object) -> SimpleNamespace:
    values = dict(
        api="v1", url="http://127.0.0.1:9", token="", org="", bucket="statspout",
        database="statspout", retention_policy="", username="", password="",
        label_tags=[TEAM, PROJECT], timeout=5.0, buffer_size=10_000, batch_size=100,
        flush_interval=0.1, close_timeout=10.0, max_backoff=1.0,
    )
    values.update(overrides)
    return SimpleNamespace(**values)


@pytest.fixture(scope="module")
def influxd() -> Iterator[InfluxServer]:
    with running_influxd() as server:
        yield server


@pytest.fixture()
def database(influxd: InfluxServer) -> str:
    name = f"t_{uuid.uuid4().hex[:8]}"
    influxd.create_database(name)
    return name


def field_types(server: InfluxServer, database: str) -> dict[str, dict[str, str]]:
    return {s["name"]: dict(s["values"]) for s in server.query("SHOW FIELD KEYS", database)}


def test_v1_samples_arrive_through_the_worker_process_with_telegraf_names_tags_and_types(
    influxd: InfluxServer, database: str,
) -> None:
    publisher = RouterFeed()
    sink = Process(
        [program("statspout-sink"), "influxdb", "--connect", publisher.endpoint,
         "--influxdb.api", "v1", "--influxdb.url", influxd.url,
         "--influxdb.label-tags", TEAM, "--influxdb.label-tags", PROJECT,
         "--influxdb.flush-interval", "0.1"],
        env={"STATSPOUT_INFLUXDB_DATABASE": database},  # an option from its variable
    )
    try:
        publisher.wait_for_subscriber()
        first = make_sample(1, cpu_percent=None)  # a container's first sample has no percent
        second = make_sample(2)
        publisher.send(first)
        publisher.send(second)
        wait_for(lambda: len(influxd.rows("SELECT * FROM docker_container_blkio", database)) == 2,
                 20, "both samples in influxd")
    finally:
        assert sink.stop() == 0, sink.log()
        publisher.close()
    # --influxdb.label-tags still works, and says once that it is deprecated.
    deprecated = [line for line in sink.stderr if "deprecated" in line]
    assert len(deprecated) == 1 and "--influxdb.label-include" in deprecated[0], sink.log()

    assert sorted(v[0] for v in influxd.query("SHOW MEASUREMENTS", database)[0]["values"]) == (
        MEASUREMENTS)
    ints = "integer"
    assert field_types(influxd, database) == {
        "docker_container_cpu": {"container_id": "string", "usage_total": ints,
                                 "usage_percent": "float", "online_cpus": ints, "pids": ints},
        "docker_container_mem": {"container_id": "string", "usage": ints, "limit": ints,
                                 "usage_percent": "float"},
        "docker_container_net": {"container_id": "string", **{
            f"{d}_{k}": ints for d in ("rx", "tx")
            for k in ("bytes", "packets", "errors", "dropped")}},
        "docker_container_blkio": {"container_id": "string",
                                   "io_service_bytes_recursive_read": ints,
                                   "io_service_bytes_recursive_write": ints},
    }
    common_tags = {"container_name", "container_image", "engine_host", TEAM, PROJECT}
    tag_keys = {s["name"]: {v[0] for v in s["values"]}
                for s in influxd.query("SHOW TAG KEYS", database)}
    assert tag_keys == {
        "docker_container_cpu": common_tags | {"cpu"},
        "docker_container_mem": common_tags,
        "docker_container_net": common_tags | {"network"},
        "docker_container_blkio": common_tags | {"device"},
    }

    identity = {"container_name": TRICKY_NAME, "container_image": "nginx:1.27",
                "engine_host": "node 1", TEAM: TRICKY_LABELS[TEAM], PROJECT: "shop",
                "container_id": first.id}
    cpu = influxd.rows("SELECT * FROM docker_container_cpu", database)
    assert cpu == [
        {"time": first.timestamp, **identity, "cpu": "cpu-total", "usage_total": 2_500_000_001,
         "usage_percent": None, "online_cpus": 4, "pids": 7},
        {"time": second.timestamp, **identity, "cpu": "cpu-total",
         "usage_total": 2_500_000_002, "usage_percent": 12.5, "online_cpus": 4, "pids": 7},
    ]
    mem = influxd.rows("SELECT * FROM docker_container_mem", database)
    assert mem[1] == {"time": second.timestamp, **identity, "usage": 50 * 2**20,
                      "limit": 2**30, "usage_percent": 4.88}
    net = influxd.rows("SELECT * FROM docker_container_net", database)
    assert net[1] == {"time": second.timestamp, **identity, "network": "total",
                      "rx_bytes": 2**62 + 12345, "tx_bytes": 1002, "rx_packets": 11,
                      "tx_packets": 12, "rx_errors": 1, "tx_errors": 2, "rx_dropped": 3,
                      "tx_dropped": 4}
    blkio = influxd.rows("SELECT * FROM docker_container_blkio", database)
    assert blkio[1] == {"time": second.timestamp, **identity, "device": "total",
                        "io_service_bytes_recursive_read": 4096,
                        "io_service_bytes_recursive_write": 8192}


def test_v1_a_repeated_write_overwrites_and_never_duplicates(
    influxd: InfluxServer, database: str,
) -> None:
    sample = make_sample(5)
    sink = InfluxDBSink(settings(url=influxd.url, database=database))
    sink.open()
    sink.write(sample)
    wait_for(lambda: sink.counters()["written"] == 1, 10, "the first write")
    sink.write(sample)  # what a retry after a timed-out but stored write sends
    sink.close()
    assert sink.counters()["written"] == 2
    rows = influxd.rows("SELECT count(usage_total) FROM docker_container_cpu", database)
    assert rows[0]["count"] == 1


def test_v1_writes_into_the_named_retention_policy(influxd: InfluxServer, database: str) -> None:
    influxd.query(f'CREATE RETENTION POLICY "short" ON "{database}" DURATION 1000w REPLICATION 1')
    sink = InfluxDBSink(settings(url=influxd.url, database=database, retention_policy="short"))
    sink.open()
    sink.write(make_sample(1))
    sink.close()
    assert influxd.rows("SELECT * FROM docker_container_mem", database) == []  # default rp
    rows = influxd.rows(f'SELECT usage FROM "{database}"."short"."docker_container_mem"', database)
    assert [r["usage"] for r in rows] == [50 * 2**20]


def test_v1_an_unknown_database_is_logged_once_and_not_retried(
    influxd: InfluxServer, caplog: pytest.LogCaptureFixture,
) -> None:
    sink = InfluxDBSink(settings(url=influxd.url, database="does_not_exist", batch_size=1))
    with caplog.at_level(logging.INFO, logger="statspout.sink.influxdb"):
        sink.open()
        for seq in range(3):
            sink.write(make_sample(seq))
        wait_for(lambda: sink.counters()["failed_batches"] == 3, 10, "three rejected batches")
        sink.close()
    counts = sink.counters()
    assert counts["retries"] == 0 and counts["rejected"] == 3 and counts["written"] == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "database not found" in errors[0]
    # The status once, and what to do about it.
    assert errors[0].count("HTTP 404") == 1
    assert 'CREATE DATABASE "does_not_exist"' in errors[0]


# API v2, against a recording fake: an HTTP endpoint on 127.0.0.1 that stores each request.


class RecordingEndpoint:
    """Answers each request with the next of ``statuses`` (then 204) and records it."""

    def __init__(self, statuses: list[tuple[int, dict[str, str]]] | None = None) -> None:
        self.requests: list[dict] = []
        self.statuses = list(statuses or [])
        recording = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                url = urllib.parse.urlsplit(self.path)
                recording.requests.append({
                    "path": url.path, "query": dict(urllib.parse.parse_qsl(url.query)),
                    "headers": {k.lower(): v for k, v in self.headers.items()}, "raw": body,
                })
                status, headers = recording.statuses.pop(0) if recording.statuses else (204, {})
                self.send_response(status)
                for key, value in headers.items():
                    if key != "body":
                        self.send_header(key, value)
                payload = headers.get("body", "").encode() or (
                    b'{"code":"unauthorized","message":"unauthorized access"}' if status == 401
                    else b"")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def lines(self, index: int) -> list[str]:
        request = self.requests[index]
        assert request["headers"].get("content-encoding") is None  # not over loopback
        return request["raw"].decode().split("\n")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def endpoint() -> Iterator[RecordingEndpoint]:
    recording = RecordingEndpoint()
    yield recording
    recording.close()


def v2_settings(url: str, **overrides: object) -> SimpleNamespace:
    return settings(api="v2", url=url, token="s3cret token", org="my org", bucket="db/rp",
                    **overrides)


def test_v2_write_against_recording_fake_endpoint(endpoint: RecordingEndpoint) -> None:
    simple = make_sample(1, name="web", image="nginx", host="h", id="abc", labels={},
                         timestamp=1_700_000_000_123_456_789, cpu_percent=None, rx_bytes=5)
    sink = InfluxDBSink(v2_settings(endpoint.url))
    runner = SinkWorkerThread(sink)
    runner.send(simple)
    runner.send(make_sample(2))
    wait_for(lambda: sink.counters()["written"] == 2, 10, "two samples written")
    runner.close()

    request = endpoint.requests[0]
    assert request["path"] == "/api/v2/write"
    assert request["query"] == {"org": "my org", "bucket": "db/rp", "precision": "ns"}
    assert request["headers"]["authorization"] == "Token s3cret token"
    lines = [line for index in range(len(endpoint.requests)) for line in endpoint.lines(index)]
    assert len(lines) == 8
    assert lines[:4] == [
        'docker_container_cpu,container_image=nginx,container_name=web,cpu=cpu-total,'
        'engine_host=h container_id="abc",online_cpus=4i,pids=7i,usage_total=2500000001i '
        '1700000000123456789',
        'docker_container_mem,container_image=nginx,container_name=web,engine_host=h '
        'container_id="abc",limit=1073741824i,usage=52428800i,usage_percent=4.88 '
        '1700000000123456789',
        'docker_container_net,container_image=nginx,container_name=web,engine_host=h,'
        'network=total container_id="abc",rx_bytes=5i,rx_dropped=3i,rx_errors=1i,'
        'rx_packets=11i,tx_bytes=1002i,tx_dropped=4i,tx_errors=2i,tx_packets=12i '
        '1700000000123456789',
        'docker_container_blkio,container_image=nginx,container_name=web,device=total,'
        'engine_host=h container_id="abc",io_service_bytes_recursive_read=4096i,'
        'io_service_bytes_recursive_write=8192i 1700000000123456789',
    ]
    # The tricky name is escaped by the library's line protocol serializer.
    assert lines[4].startswith(
        'docker_container_cpu,com.docker.compose.project=shop,com.example.team=ops\\,\\ '
        '"blue"\\=1\\ \\\\ é,container_image=nginx:1.27,container_name=web\\ 1\\,\\ '
        '"shop"\\=eu\\ \\\\ back\\ ñ€\\ 名前,cpu=cpu-total,engine_host=node\\ 1 ')


def test_v2_retries_503_and_429_with_retry_after_against_recording_fake_endpoint() -> None:
    recording = RecordingEndpoint([(503, {}), (429, {"Retry-After": "0"})])
    try:
        sink = InfluxDBSink(v2_settings(recording.url, max_backoff=0.2))
        sink.open()
        for seq in range(3):
            sink.write(make_sample(seq))
        wait_for(lambda: sink.counters()["written"] == 3, 20, "the batch written after retries")
        sink.close()
        counts = sink.counters()
        assert (counts["retries"], counts["failed_batches"], counts["dropped"]) == (2, 0, 0)
        assert len(recording.requests) == 3
        assert len({r["raw"] for r in recording.requests}) == 1  # same batch
    finally:
        recording.close()


def test_one_failed_part_of_a_batch_retries_the_whole_batch_against_recording_fake() -> None:
    """400 samples go out as 4 parts at once; one part's 503 makes the batch fail and be
    written again whole (rewriting the parts that landed changes nothing in InfluxDB)."""
    recording = RecordingEndpoint([(503, {"Retry-After": "0"})])
    try:
        sink = InfluxDBSink(v2_settings(recording.url, batch_size=400, flush_interval=0.1))
        for seq in range(400):
            sink.write(make_sample(seq))
        sink.open()
        wait_for(lambda: sink.counters()["written"] == 400, 20, "the batch written")
        sink.close()
        counts = sink.counters()
        assert (counts["retries"], counts["failed_batches"], counts["rejected"]) == (1, 0, 0)
        first, second = recording.requests[:4], recording.requests[4:]
        assert len(second) == 4
        assert sorted(r["raw"] for r in first) == sorted(r["raw"] for r in second)
        lines = [line for index in range(4, 8) for line in recording.lines(index)]
        assert len(lines) == 1600 and len(set(lines)) == 1600  # each point once per attempt
    finally:
        recording.close()


def test_v2_a_bad_token_is_logged_once_against_recording_fake_endpoint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recording = RecordingEndpoint([(401, {})] * 3)
    try:
        sink = InfluxDBSink(v2_settings(recording.url, batch_size=1))
        with caplog.at_level(logging.INFO, logger="statspout.sink.influxdb"):
            sink.open()
            for seq in range(3):
                sink.write(make_sample(seq))
            wait_for(lambda: sink.counters()["failed_batches"] == 3, 10, "three rejections")
            sink.close()
        assert len(recording.requests) == 3  # one request per batch: no retry loop
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "401" in errors[0] and "unauthorized" in errors[0]
    finally:
        recording.close()


def test_v1_sends_basic_auth_and_rp_against_recording_fake_endpoint(
    endpoint: RecordingEndpoint,
) -> None:
    sink = InfluxDBSink(settings(url=endpoint.url, database="db", retention_policy="rp",
                                 username="user", password="pa:ss"))
    sink.open()
    sink.write(make_sample(1))
    sink.close()
    request = endpoint.requests[0]
    assert request["path"] == "/write"
    assert request["query"] == {"db": "db", "rp": "rp", "precision": "ns"}
    assert request["headers"]["authorization"] == "Basic dXNlcjpwYTpzcw=="  # user:pa:ss
    assert len(endpoint.lines(0)) == 4


# Outage: influxd stopped for 20 s while samples flow.


def test_outage_every_sample_received_is_stored_exactly_once_after_influxd_returns() -> None:
    with running_influxd() as server:
        server.create_database("outage")
        sink = InfluxDBSink(settings(url=server.url, database="outage", batch_size=20,
                                     flush_interval=0.1, max_backoff=2.0, timeout=2.0))
        runner = SinkWorkerThread(sink)
        feeding = threading.Event()
        feeding.set()

        def feed() -> None:
            while feeding.is_set():
                seq = runner.feed.sequence + 1
                runner.send(make_sample(seq, cpu_usage_ns=seq))
                time.sleep(0.05)

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            wait_for(lambda: sink.counters()["written"] >= 20, 20, "writes before the outage")
            server.stop()
            outage_started = time.monotonic()
            wait_for(lambda: sink.counters()["retries"] >= 1, 20, "a failed write")
            # The outage itself: samples keep flowing for 20 s while the server is down.
            time.sleep(max(0.0, 20.0 - (time.monotonic() - outage_started)))
            buffered_during_outage = sink.counters()["buffered"]
            server.start()
            written_before = sink.counters()["written"]
            wait_for(lambda: sink.counters()["written"] > written_before + 50, 30,
                     "writes after the outage")
        finally:
            feeding.clear()
            feeder.join()
        sent = runner.feed.sequence
        wait_for(lambda: runner.worker.counts.samples == sent, 20, "the worker took every sample")
        wait_for(lambda: sink.counters()["buffered"] == 0, 30, "the buffer drained")
        runner.close()

        counts = sink.counters()
        assert buffered_during_outage > 100  # the outage really held samples back
        assert counts["retries"] >= 1 and counts["dropped"] == 0 and counts["rejected"] == 0
        assert runner.worker.counts.gaps == 0
        rows = server.rows("SELECT usage_total FROM docker_container_cpu", "outage")
        stored = [row["usage_total"] for row in rows]  # usage_total carries the seq
        assert sorted(stored) == list(range(1, sent + 1))  # every seq, exactly once
        assert [row["time"] for row in rows] == [make_sample(s).timestamp for s in stored]


def test_v2_connection_refused_is_retried_and_counted_unflushed_at_close() -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = InfluxDBSink(v2_settings(f"http://127.0.0.1:{port}", max_backoff=0.1,
                                    close_timeout=0.1))
    sink.open()
    sink.write(make_sample(1))
    wait_for(lambda: sink.counters()["retries"] >= 2, 20, "retries against a refused port")
    sink.close()
    counts = sink.counters()
    assert (counts["unflushed"], counts["failed_batches"], counts["written"]) == (1, 0, 0)


def test_classifier_honours_retry_after_and_gives_up_on_client_errors() -> None:
    too_many = classify(WriteRefused(429, "slow down", "3"))
    assert too_many.retryable and too_many.retry_after == 3.0
    assert classify(WriteRefused(503, "busy", "7")).retry_after == 7.0
    assert classify(WriteRefused(500, "oops", None)).retryable
    for status in (400, 401, 403, 404):
        refused = classify(WriteRefused(status, "no", None))
        assert not refused.retryable and not refused.split
    assert classify(WriteRefused(413, "too large", None)).split  # halves may fit
    assert classify(urllib3.exceptions.NewConnectionError(None, "refused")).retryable


# A bad sample costs only itself: InfluxDB 1.x stores the rest of a batch (a partial write).


def write_mixed_batch(influxd: InfluxServer, database: str, bad: object) -> dict[str, int]:
    """40 normal samples and ``bad`` in one batch; the sink's counters after writing it."""
    sink = InfluxDBSink(settings(url=influxd.url, database=database, batch_size=1000))
    for seq in range(1, 21):
        sink.write(make_sample(seq))
    sink.write(bad)
    for seq in range(21, 41):
        sink.write(make_sample(seq))
    sink.open()
    wait_for(lambda: sink.counters()["buffered"] == 0, 20, "the batch written")
    sink.close()
    return dict(sink.counters())


def test_v1_a_sample_outside_influx_time_range_costs_its_four_points_only(
    influxd: InfluxServer, database: str,
) -> None:
    bad = make_sample(99, timestamp=2**63 - 1)  # beyond InfluxDB's last nanosecond
    counts = write_mixed_batch(influxd, database, bad)
    assert (counts["written"], counts["rejected"], counts["rejected_points"]) == (41, 0, 4)
    assert counts["failed_batches"] == 0 and counts["retries"] == 0
    rows = influxd.rows("SELECT usage_total FROM docker_container_cpu", database)
    assert sorted(r["usage_total"] for r in rows) == [2_500_000_000 + s for s in range(1, 41)]


def test_v1_a_field_type_conflict_costs_the_one_point_influxd_dropped(
    influxd: InfluxServer, database: str,
) -> None:
    # Another writer stored 'usage' as a string in a week of its own (its own shard group).
    elsewhere = make_sample(99, timestamp=1_500_000_000_000_000_000)
    influxd_write(influxd, database, f'docker_container_mem usage="text" {elsewhere.timestamp}')
    counts = write_mixed_batch(influxd, database, elsewhere)
    assert (counts["written"], counts["rejected"], counts["rejected_points"]) == (41, 0, 1)
    cpu = influxd.rows("SELECT usage_total FROM docker_container_cpu", database)
    assert len(cpu) == 41  # the sample's other three points are stored
    mem = influxd.rows("SELECT usage FROM docker_container_mem WHERE usage > 0", database)
    assert len(mem) == 40


def influxd_write(influxd: InfluxServer, database: str, line: str) -> None:
    http = urllib3.PoolManager()
    response = http.request("POST", f"{influxd.url}/write?db={database}", body=line.encode())
    assert response.status == 204, response.data


# Labels never rewrite identity.


@pytest.mark.parametrize("option", ["--influxdb.label-include", "--influxdb.label-tags"])
@pytest.mark.parametrize("key", ["container_name", "engine_host", "time", "_measurement",
                                 "_field", "container_id", "cpu"])
def test_a_label_tag_that_would_shadow_a_tag_or_field_is_refused_at_start(
    key: str, option: str,
) -> None:
    sink = Process([program("statspout-sink"), "influxdb", option, key])
    assert sink.popen.wait(20) == 2
    sink.stop()
    assert len(sink.stderr) == 1 and option in sink.stderr[0]
    assert repr(key) in sink.stderr[0]


def test_label_globs_choose_the_tags_and_skip_keys_that_would_shadow_identity(
    influxd: InfluxServer, database: str,
) -> None:
    """docs/labels.md: include and exclude globs on keys; a glob never reaches identity."""
    publisher = RouterFeed()
    sink = Process(
        [program("statspout-sink"), "influxdb", "--connect", publisher.endpoint,
         "--influxdb.api", "v1", "--influxdb.url", influxd.url, "--influxdb.database", database,
         "--influxdb.label-include", "com.*", "--influxdb.label-include", "container_*",
         "--influxdb.label-include", "_*", "--influxdb.flush-interval", "0.1"],
        env={"STATSPOUT_INFLUXDB_LABEL_EXCLUDE": "com.docker.*,*.secret"},
    )
    try:
        publisher.wait_for_subscriber()
        publisher.send(make_sample(1, labels={
            **TRICKY_LABELS, "com.example.secret": "hidden", "container_name": "spoofed",
            "container_kind": "batch", "_measurement": "spoofed"}))
        wait_for(lambda: influxd.rows("SELECT * FROM docker_container_cpu", database), 20,
                 "the sample in influxd")
    finally:
        assert sink.stop() == 0, sink.log()
        publisher.close()
    assert not [line for line in sink.stderr if "deprecated" in line]
    tag_keys = {s["name"]: {v[0] for v in s["values"]}
                for s in influxd.query("SHOW TAG KEYS", database)}
    assert tag_keys["docker_container_cpu"] == {
        "container_name", "container_image", "engine_host", "cpu", TEAM, "container_kind"}
    (row,) = influxd.rows("SELECT * FROM docker_container_cpu", database)
    assert (row["container_name"], row[TEAM], row["container_kind"]) == (
        TRICKY_NAME, TRICKY_LABELS[TEAM], "batch")


def test_identity_tags_win_over_a_label_of_the_same_name_whatever_the_allow_list(
    influxd: InfluxServer, database: str,
) -> None:
    spoof = make_sample(1, labels={"container_name": "spoofed", "engine_host": "elsewhere",
                                   TEAM: "ops"})
    # Past the option's check, as a sink built in code might be.
    sink = InfluxDBSink(settings(url=influxd.url, database=database,
                                 label_tags=["container_name", "engine_host", TEAM]))
    sink.open()
    sink.write(spoof)
    sink.close()
    rows = influxd.rows("SELECT * FROM docker_container_cpu", database)
    assert [(r["container_name"], r["engine_host"], r[TEAM]) for r in rows] == [
        (TRICKY_NAME, "node 1", "ops")]


def test_control_characters_in_tag_values_are_written_as_telegraf_escapes_the_rest_intact(
    influxd: InfluxServer, database: str,
) -> None:
    value = "a\tb\nc\rd\fe\x01f\x00g é"
    sample = make_sample(1, labels={TEAM: value, PROJECT: "line one\nline two"})
    sink = InfluxDBSink(settings(url=influxd.url, database=database))
    sink.open()
    sink.write(sample)
    sink.close()
    assert sink.counters()["written"] == 1
    rows = influxd.rows("SELECT * FROM docker_container_cpu", database)
    # As docs/sinks/influxdb.md says: tab, newline and CR as two characters each.
    assert [(r[TEAM], r[PROJECT]) for r in rows] == [
        ("a\\tb\\nc\\rd\fe\x01f\x00g é", "line one\\nline two")]
    assert line_protocol([sample], (TEAM,)).count(b"\n") == 3  # four lines, one a point


# API detection and what the sink says when a write cannot succeed.


def test_auto_asks_the_server_and_writes_with_v1_to_a_1x_server(
    influxd: InfluxServer, database: str, caplog: pytest.LogCaptureFixture,
) -> None:
    sink = InfluxDBSink(settings(api="auto", url=influxd.url, database=database,
                                 token="unused", password="pw"))
    with caplog.at_level(logging.INFO, logger="statspout.sink.influxdb"):
        sink.open()
        sink.write(make_sample(1))
        sink.close()
    assert sink.counters()["written"] == 1
    assert len(influxd.rows("SELECT * FROM docker_container_cpu", database)) == 1
    lines = [r.getMessage() for r in caplog.records if "writing with API" in r.getMessage()]
    assert len(lines) == 1 and "InfluxDB 1.6" in lines[0] and "API v1" in lines[0]
    assert f"database='{database}'" in lines[0] and "password=***" in lines[0]
    assert "token" not in lines[0] and "pw" not in lines[0].replace("password", "")


def test_an_explicit_api_wins_and_v2_against_1x_says_what_is_wrong(
    influxd: InfluxServer, database: str, caplog: pytest.LogCaptureFixture,
) -> None:
    sink = InfluxDBSink(settings(api="v2", url=influxd.url, bucket=database, batch_size=1))
    with caplog.at_level(logging.INFO, logger="statspout.sink.influxdb"):
        sink.open()
        for seq in range(3):
            sink.write(make_sample(seq))
        wait_for(lambda: sink.counters()["failed_batches"] == 3, 10, "three refusals")
        sink.close()
    assert sink.counters()["retries"] == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].count("HTTP 404") == 1 and "no API v2" in errors[0]
    assert "--influxdb.api v1 or auto" in errors[0]
    assert not any("writing with API" in r.getMessage() for r in caplog.records)  # no /ping


def test_auto_waits_for_a_server_that_is_down_at_start_then_detects_it(
    database: str,
) -> None:
    with running_influxd() as server:
        server.create_database(database)
        server.stop()
        sink = InfluxDBSink(settings(api="auto", url=server.url, database=database,
                                     max_backoff=0.2))
        sink.open()
        sink.write(make_sample(1))
        wait_for(lambda: sink.counters()["retries"] >= 2, 20, "retries while it is down")
        server.start()
        wait_for(lambda: sink.counters()["written"] == 1, 30, "written once it is back")
        sink.close()
        assert len(server.rows("SELECT * FROM docker_container_cpu", database)) == 1


def test_worker_process_logs_only_its_api_options_and_never_a_url_password(
    influxd: InfluxServer, database: str,
) -> None:
    url = influxd.url.replace("http://", "http://admin:s3cr3t-pw@")
    publisher = RouterFeed()
    sink = Process([program("statspout-sink"), "influxdb", "--connect", publisher.endpoint,
                    "--influxdb.url", url, "--influxdb.flush-interval", "0.1"],
                   env={"STATSPOUT_INFLUXDB_DATABASE": database,
                        "STATSPOUT_INFLUXDB_PASSWORD": "another-s3cret"})
    try:
        publisher.wait_for_subscriber()
        publisher.send(make_sample(1))
        wait_for(lambda: len(influxd.rows("SELECT * FROM docker_container_cpu", database)) == 1,
                 20, "the sample stored (credentials from the URL accepted)")
    finally:
        assert sink.stop() == 0, sink.log()
        publisher.close()
    log = sink.log()
    assert "s3cr3t-pw" not in log and "another-s3cret" not in log
    started = next(line for line in sink.stderr if "sink influxdb: api=" in line)
    assert "admin:***@" in started
    assert "token" not in started and "org=" not in started and "database" not in started
    detected = next(line for line in sink.stderr if "writing with API v1" in line)
    assert f"database='{database}'" in detected and "password=***" in detected


def test_sigterm_with_influxd_down_does_not_wait_out_the_close_timeout() -> None:
    publisher = RouterFeed()
    with running_influxd() as server:
        server.create_database("statspout")
        sink = Process([program("statspout-sink"), "influxdb", "--connect", publisher.endpoint,
                        "--influxdb.api", "v1", "--influxdb.url", server.url,
                        "--influxdb.flush-interval", "0.1", "--influxdb.close-timeout", "60",
                        "--influxdb.max-backoff", "60"])
        try:
            publisher.wait_for_subscriber()
            publisher.send(make_sample(1))
            wait_for(lambda: server.rows("SELECT * FROM docker_container_cpu", "statspout"),
                     20, "a sample stored while influxd is up")
            server.stop()
            for seq in range(2, 5):
                publisher.send(make_sample(seq))
            wait_for(lambda: "write failed" in sink.log(), 20, "a failed write")
            started = time.monotonic()
            assert sink.stop(timeout=90) == 0, sink.log()
            took = time.monotonic() - started
        finally:
            sink.stop()
            publisher.close()
    assert took < 30  # one more attempt, not the 60 s close timeout
    assert "closed with 3 samples not written (counted in unflushed" in sink.log()
    started_line = next(line for line in sink.stderr if "sink influxdb: api=" in line)
    assert "database='statspout'" in started_line  # explicit v1: its options only
    assert "token" not in started_line and "org=" not in started_line


def test_the_example_supervisord_program_writes_to_debians_influxd_as_written(
    influxd: InfluxServer,
) -> None:
    example = (REPOSITORY / "conf.d" / "influxdb.conf.example").read_text()
    command = next(line.split("=", 1)[1] for line in example.splitlines()
                   if line.startswith("command="))
    argv = shlex.split(command)
    assert argv[0].endswith("/statspout-sink")
    argv[0] = program("statspout-sink")
    argv[argv.index("--influxdb.url") + 1] = influxd.url  # the example's port, made free
    database = argv[argv.index("--influxdb.database") + 1]
    influxd.create_database(database)  # as the example's comment says
    publisher = RouterFeed()
    sink = Process([*argv, "--connect", publisher.endpoint, "--influxdb.flush-interval", "0.1"])
    try:
        publisher.wait_for_subscriber()
        publisher.send(make_sample(1, timestamp=1_600_000_000_000_000_000))
        wait_for(lambda: influxd.rows("SELECT * FROM docker_container_cpu WHERE time = "
                                      "1600000000000000000", database) != [],
                 20, "the sample stored by the example's command")
    finally:
        assert sink.stop() == 0, sink.log()
        publisher.close()
    assert "writing with API v1" in sink.log()


def test_v2_partial_write_of_influxdb_2_is_counted_as_rejected_points_against_recording_fake(
) -> None:
    # InfluxDB 2.x's answer when one point of a batch conflicts: 422, the rest stored.
    body = ('{"code":"unprocessable entity","message":"failure writing points to database: '
            'partial write: field type conflict: input field \\"usage\\" on measurement '
            '\\"docker_container_mem\\" is type integer, already exists as type string '
            'dropped=1"}')
    recording = RecordingEndpoint([(422, {"body": body})])
    try:
        sink = InfluxDBSink(v2_settings(recording.url, batch_size=10))
        for seq in range(10):
            sink.write(make_sample(seq))
        sink.open()
        wait_for(lambda: sink.counters()["buffered"] == 0, 10, "the batch answered")
        sink.close()
        counts = sink.counters()
        assert (counts["written"], counts["rejected"], counts["rejected_points"]) == (10, 0, 1)
        assert len(recording.requests) == 1  # not retried, not split
    finally:
        recording.close()
