"""The MongoDB sink against a real MongoDB wire-protocol server (SecantusDB) on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from functools import partial
from types import SimpleNamespace

import pymongo
import pytest
from bson import Int64
from support.feed import RouterFeed, SinkWorkerThread
from support.mongo import MongoServer, running_mongo
from support.processes import Process, program
from support.samples import make_engine, make_series_stats, make_state
from support.waiting import wait_for

from statspout.sinks.mongodb import MongoDBSink, classify, document_id
from statspout.wire import STATS_FIELDS

TRICKY_NAME = 'web 1, "shop"=eu \\ back ñ€ 名前\\'
TRICKY_LABELS = {
    "com.docker.compose.project": "shop, \"eu\"=1",
    "$dollar.key": "kept",
    "plain": "é 名前",
}


make_sample = partial(make_series_stats, name=TRICKY_NAME, labels=TRICKY_LABELS)


def settings(uri: str, collection: str, **overrides: object) -> SimpleNamespace:
    values = dict(
        uri=uri, database="statspout", collection=collection, ttl=0, timeout=2.0,
        buffer_size=10_000, batch_size=100, flush_interval=0.1, close_timeout=10.0,
        max_backoff=1.0,
    )
    values.update(overrides)
    return SimpleNamespace(**values)


@pytest.fixture(scope="module")
def mongo() -> Iterator[MongoServer]:
    with running_mongo() as server:
        yield server


@pytest.fixture(scope="module")
def client(mongo: MongoServer) -> Iterator[pymongo.MongoClient]:
    with mongo.client() as connection:
        yield connection


@pytest.fixture()
def collection() -> str:
    return f"stats_{uuid.uuid4().hex[:8]}"


def test_samples_arrive_through_the_worker_process_as_one_document_each(
    mongo: MongoServer, client: pymongo.MongoClient, collection: str,
) -> None:
    publisher = RouterFeed()
    sink = Process(
        [program("statspout-sink"), "mongodb", "--connect", publisher.endpoint,
         "--mongodb.uri", mongo.uri, "--mongodb.flush-interval", "0.1"],
        env={"STATSPOUT_MONGODB_COLLECTION": collection},  # an option from its variable
    )
    try:
        publisher.wait_for_subscriber()
        first = make_sample(1, cpu_percent=None, mem_percent=None)
        second = make_sample(2)
        publisher.send(first)
        publisher.send(second)
        stored = client.statspout[collection]
        wait_for(lambda: stored.count_documents({}) == 2, 20, "both documents")
    finally:
        assert sink.stop() == 0, sink.log()
        publisher.close()

    documents = list(stored.find().sort("timestamp_ns", 1))
    # The wire 1.1 figures a 1.0-style sample lacks are stored as null.
    names = [spec.name for spec in STATS_FIELDS]
    newer = names[names.index("interval_s"):]
    assert all(documents[1].pop(name) is None for name in newer)
    assert documents[1] == {
        "_id": f"node 1/{second.id}/{second.timestamp}",
        "timestamp": datetime(2023, 11, 14, 22, 13, 20, 2000, tzinfo=timezone.utc),
        "timestamp_ns": second.timestamp,
        "seq": 2, "host": "node 1", "id": second.id, "name": TRICKY_NAME, "image": "nginx:1.27",
        "labels": [{"key": "$dollar.key", "value": "kept"},
                   {"key": "com.docker.compose.project", "value": "shop, \"eu\"=1"},
                   {"key": "plain", "value": "é 名前"}],
        "cpu_percent": 12.5, "cpu_usage_ns": 2_500_000_002, "online_cpus": 4,
        "mem_usage": 50 * 2**20, "mem_limit": 2**30, "mem_percent": 4.88,
        "rx_bytes": 2**62 + 12345, "tx_bytes": 1002, "rx_packets": 11, "tx_packets": 12,
        "rx_errors": 1, "tx_errors": 2, "rx_dropped": 3, "tx_dropped": 4,
        "blk_read_bytes": 4096, "blk_write_bytes": 8192, "pids": 7,
    }
    assert documents[0]["cpu_percent"] is None and documents[0]["mem_percent"] is None
    # Every integer figure is a BSON Int64, small or large, so a field has one type.
    for name in ("seq", "timestamp_ns", "pids", "rx_errors", "cpu_usage_ns", "rx_bytes"):
        assert type(documents[1][name]) is Int64, name
    # Label keys with dots and a leading $ are kept exactly and can be queried.
    for key, value in TRICKY_LABELS.items():
        found = stored.find({"labels": {"$elemMatch": {"key": key, "value": value}}})
        assert sorted(d["seq"] for d in found) == [1, 2], key
    assert stored.count_documents({"name": TRICKY_NAME}) == 2


def test_indexes_on_name_and_timestamp_and_the_ttl_index_are_created(
    mongo: MongoServer, client: pymongo.MongoClient, collection: str,
) -> None:
    sink = MongoDBSink(settings(mongo.uri, collection, ttl=86400))
    sink.open()
    sink.write(make_sample(1))
    sink.close()
    indexes = client.statspout[collection].index_information()
    assert indexes["name_1_timestamp_1"]["key"] == [("name", 1), ("timestamp", 1)]
    assert indexes["timestamp_ttl"]["key"] == [("timestamp", 1)]
    assert indexes["timestamp_ttl"]["expireAfterSeconds"] == 86400


def test_a_retried_batch_is_stored_once_and_counts_as_written(
    mongo: MongoServer, client: pymongo.MongoClient, collection: str,
) -> None:
    sink = MongoDBSink(settings(mongo.uri, collection))
    sink.open()
    for seq in (1, 2):
        sink.write(make_sample(seq))
    wait_for(lambda: sink.counters()["written"] == 2, 10, "the first batch")
    # The same samples again, as after a write that timed out but was stored, plus one new.
    for seq in (1, 2, 3):
        sink.write(make_sample(seq))
    sink.close()
    counts = sink.counters()
    assert counts["written"] == 5 and counts["failed_batches"] == 0
    assert sorted(client.statspout[collection].distinct("seq")) == [1, 2, 3]
    assert client.statspout[collection].count_documents({}) == 3


def test_document_ids_are_deterministic_per_host_container_and_time() -> None:
    assert document_id(make_sample(1)) == document_id(make_sample(1, cpu_percent=1.0))
    assert document_id(make_sample(1)) != document_id(make_sample(2))
    assert document_id(make_sample(1)) != document_id(make_sample(1, host="other"))


def test_network_errors_are_retried_and_server_refusals_are_not() -> None:
    assert classify(pymongo.errors.AutoReconnect("connection refused")).retryable
    assert classify(pymongo.errors.ServerSelectionTimeoutError("no server")).retryable
    assert classify(pymongo.errors.NetworkTimeout("timed out")).retryable
    denied = pymongo.errors.OperationFailure("not authorized", code=13)
    assert not classify(denied).retryable
    assert not classify(ValueError("bad document")).retryable


def test_a_document_too_large_is_given_up_logged_once_and_the_rest_goes_on(
    mongo: MongoServer, client: pymongo.MongoClient, collection: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    huge = {"blob": "x" * (17 * 2**20)}  # over MongoDB's 16 MiB document limit
    sink = MongoDBSink(settings(mongo.uri, collection, batch_size=1))
    with caplog.at_level(logging.INFO, logger="statspout.sink.mongodb"):
        sink.open()
        for seq in range(1, 4):
            sink.write(make_sample(seq, labels=huge))
        sink.write(make_sample(4))
        wait_for(lambda: sink.counters()["written"] == 1, 20, "the good sample after the bad")
        sink.close()
    counts = sink.counters()
    # The server refuses it (a write error of the insert): rejected, without a failed write.
    assert (counts["rejected"], counts["written"], counts["retries"]) == (3, 1, 0)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "too large" in errors[0]
    assert client.statspout[collection].distinct("seq") == [4]


@pytest.mark.parametrize("bad", [
    pytest.param({"seq": 2**64 - 1}, id="seq-2^64-1-overflows-bson"),
    pytest.param({"seq": 10_000, "labels": {"blob": "x" * (50 * 2**20)}},
                 id="50MB-document-too-large"),
])
def test_one_bad_sample_in_a_batch_costs_only_itself(
    mongo: MongoServer, client: pymongo.MongoClient, collection: str, bad: dict,
) -> None:
    sink = MongoDBSink(settings(mongo.uri, collection, batch_size=1000, flush_interval=0.05))
    normal = [make_sample(seq) for seq in range(1, 41)]
    for sample in normal[:20]:
        sink.write(sample)
    sink.write(replace(make_sample(1), timestamp=1, **bad))  # another _id
    for sample in normal[20:]:
        sink.write(sample)
    sink.open()  # the 41 samples go out as one batch
    wait_for(lambda: sink.counters()["buffered"] == 0, 60, "the batch and its parts written")
    sink.close()
    counts = sink.counters()
    assert (counts["written"], counts["rejected"], counts["failed_batches"]) == (40, 1, 1)
    assert counts["split_batches"] >= 1 and counts["retries"] == 0
    stored = client.statspout[collection].distinct("seq")
    assert sorted(stored) == list(range(1, 41))


def test_outage_every_sample_received_is_stored_exactly_once_after_the_server_returns() -> None:
    with running_mongo() as server:
        sink = MongoDBSink(settings(server.uri, "outage", batch_size=20, max_backoff=2.0))
        runner = SinkWorkerThread(sink)
        feeding = threading.Event()
        feeding.set()

        def feed() -> None:
            while feeding.is_set():
                runner.send(make_sample(runner.feed.sequence + 1))
                time.sleep(0.05)

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            wait_for(lambda: sink.counters()["written"] >= 20, 30, "writes before the outage")
            server.stop()
            outage_started = time.monotonic()
            wait_for(lambda: sink.counters()["retries"] >= 1, 30, "a failed write")
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
        with server.client() as check:
            stored = [d["seq"] for d in check.statspout.outage.find({}, {"seq": 1})]
        assert sorted(stored) == list(range(1, sent + 1))  # every seq, exactly once


def test_a_password_in_the_uri_is_never_printed_by_the_worker_process(
    mongo: MongoServer, collection: str,
) -> None:
    uri = mongo.uri.replace("mongodb://", "mongodb://statspout:s3cr3t-pw@")
    publisher = RouterFeed()
    sink = Process(
        [program("statspout-sink"), "mongodb", "--connect", publisher.endpoint,
         "--mongodb.uri", uri, "--mongodb.collection", collection,
         "--mongodb.flush-interval", "0.1", "--mongodb.timeout", "1", "--log-level", "debug"],
    )
    try:
        publisher.wait_for_subscriber()
        publisher.send(make_sample(1))
        # Stored, or refused for the credentials: either way the sink has logged about it.
        wait_for(lambda: "written" in sink.log() or "rejected" in sink.log()
                 or "failed" in sink.log(), 20, "the write's outcome in the log")
    finally:
        sink.stop()
        publisher.close()
    log = sink.log()
    assert "sink mongodb: uri=***" in log
    assert "s3cr3t-pw" not in log, log


def test_states_and_engines_go_to_their_own_collections_through_the_worker_process(
    mongo: MongoServer, client: pymongo.MongoClient, collection: str,
) -> None:
    """Wire 1.1: state and engine documents beside the samples, every integer an Int64 (inside
    the per-interface, per-device and memory.stat arrays too), map keys with dots and $ kept."""
    publisher = RouterFeed()
    sink = Process(
        [program("statspout-sink"), "mongodb", "--connect", publisher.endpoint,
         "--mongodb.uri", mongo.uri, "--mongodb.flush-interval", "0.1",
         "--mongodb.collection", collection, "--mongodb.state-collection", f"{collection}_st"],
        env={"STATSPOUT_MONGODB_ENGINE_COLLECTION": f"{collection}_en"},
    )
    sample = make_sample(
        1, net_interfaces={"eth0.100": {"rx_bytes": 2**62, "tx_bytes": 5}, "$x": {"rx_bytes": 1}},
        blk_devices={"8:0": {"read_bytes": 4096, "write_bytes": 0}},
        mem_stat={"total_rss": 7, "a.b": 2**40}, interval_s=1.0, oom_kills=1)
    state = make_state(2, labels=TRICKY_LABELS, name=TRICKY_NAME)
    running = make_state(3, status="running", health=None, health_failing_streak=None,
                         exit_code=None, finished_at=None, pid=4242,
                         timestamp=state.timestamp + 1)
    engine = make_engine(4)
    try:
        publisher.wait_for_subscriber()
        for message in (sample, state, running, engine, state):  # the last one: a repeat
            publisher.send(message)
        states = client.statspout[f"{collection}_st"]
        engines = client.statspout[f"{collection}_en"]
        wait_for(lambda: states.count_documents({}) == 2 and engines.count_documents({}) == 1
                 and client.statspout[collection].count_documents({}) == 1, 20, "documents")
    finally:
        assert sink.stop() == 0, sink.log()
        publisher.close()

    stored = client.statspout[collection].find_one()
    assert stored["net_interfaces"] == [
        {"name": "$x", "rx_bytes": 1}, {"name": "eth0.100", "rx_bytes": 2**62, "tx_bytes": 5}]
    assert stored["blk_devices"] == [{"device": "8:0", "read_bytes": 4096, "write_bytes": 0}]
    assert stored["mem_stat"] == [{"key": "a.b", "value": 2**40}, {"key": "total_rss", "value": 7}]
    assert all(type(v) is Int64 for d in stored["net_interfaces"] for k, v in d.items()
               if k != "name")
    assert type(stored["mem_stat"][0]["value"]) is Int64
    assert type(stored["oom_kills"]) is Int64 and stored["interval_s"] == 1.0

    exited = states.find_one({"seq": 2})
    assert exited == {
        "_id": f"node-1/{state.id}/{state.timestamp}",
        "timestamp": datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc),
        "timestamp_ns": state.timestamp, "seq": 2, "host": "node-1", "id": state.id,
        "name": TRICKY_NAME, "image": "busybox:1",
        "labels": [{"key": k, "value": v} for k, v in sorted(TRICKY_LABELS.items())],
        "interval_s": 1.0, "status": "exited", "health": "unhealthy",
        "health_failing_streak": 4, "restart_count": 2, "exit_code": 3, "oom_killed": False,
        "started_at": datetime(2023, 11, 14, 22, 13, 10, tzinfo=timezone.utc),
        "started_at_ns": state.started_at,
        "finished_at": datetime(2023, 11, 14, 22, 13, 18, tzinfo=timezone.utc),
        "finished_at_ns": state.finished_at, "pid": 0,
    }
    for name in ("seq", "timestamp_ns", "restart_count", "exit_code", "pid", "started_at_ns",
                 "health_failing_streak"):
        assert type(exited[name]) is Int64, name
    assert type(exited["oom_killed"]) is bool
    alive = states.find_one({"seq": 3})
    assert (alive["status"], alive["health"], alive["exit_code"], alive["finished_at"],
            alive["finished_at_ns"], alive["pid"]) == ("running", None, None, None, None, 4242)
    assert engines.find_one() == {
        "_id": f"node-1/{engine.timestamp}",
        "timestamp": datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc),
        "timestamp_ns": engine.timestamp, "seq": 4, "host": "node-1", "interval_s": 1.0,
        "engine": "docker", "server_version": "20.10.24", "containers_running": 3,
        "containers_paused": 1, "containers_stopped": 2, "images": 7, "cpus": 2,
        "memory_total": 2**34,
    }
    assert type(engines.find_one()["memory_total"]) is Int64
    assert set(states.index_information()) >= {"name_1_timestamp_1"}
    assert set(engines.index_information()) >= {"host_1_timestamp_1"}
