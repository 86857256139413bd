"""The Prometheus sink behind the real worker runtime, scraped by a real Prometheus server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from support.feed import RouterFeed, SinkWorkerThread
from support.ports import free_port
from support.prometheus_server import prometheus_server
from support.samples import make_container_stats, make_event_for

from statspout.sinks.prometheus import FAMILIES, PrometheusSink

TRICKY_NAME = 'web "shop", a=b ünïcødé 名前'
LABEL_KEY = "com.docker.compose.project"


# A label value with a comma, quotes and an equals sign, and a label shown only when allow-listed.
make_sample = partial(make_container_stats,
                      labels={LABEL_KEY: "shop, \"eu\"=1", "secret": "do not expose"})


def prometheus_sink(port: int, **settings: object) -> PrometheusSink:
    defaults = dict(address=f"127.0.0.1:{port}", interval=60.0, stale_intervals=3,
                    label_names=[f"{LABEL_KEY},tier"])
    return PrometheusSink(SimpleNamespace(**{**defaults, **settings}))


@pytest.fixture(scope="module")
def setup():
    main_port, short_port, glob_port = free_port(), free_port(), free_port()
    feeds = [
        SinkWorkerThread(prometheus_sink(main_port)),
        # Stale after 1 s × 3 without a sample: short enough to watch series expire.
        SinkWorkerThread(prometheus_sink(short_port, interval=1.0, stale_intervals=3)),
        # Labels chosen by globs, not by the deprecated exact list.
        SinkWorkerThread(prometheus_sink(glob_port, label_names=None,
                                         label_include=["com.example.*", "tier"],
                                         label_exclude=["com.example.secret*"])),
    ]
    ports = (main_port, short_port, glob_port)
    try:
        with prometheus_server([f"127.0.0.1:{port}" for port in ports]) as prom:
            prom.wait_for_targets_up(3)
            yield SimpleNamespace(prom=prom, feed=feeds[0], short_feed=feeds[1],
                                  short_url=f"http://127.0.0.1:{short_port}/metrics",
                                  glob_feed=feeds[2],
                                  glob_url=f"http://127.0.0.1:{glob_port}/metrics")
    finally:
        for feed in feeds:
            feed.close()


def series_of(prom, container_id: str) -> dict[str, dict]:
    """Every series Prometheus has now for one container, by metric name."""
    result = prom.query(f'{{id="{container_id}"}}')
    return {row["metric"]["__name__"]: row for row in result}


def wait_present(prom, container_id: str) -> dict[str, dict]:
    prom.wait_for(f'container_last_seen{{id="{container_id}"}}', lambda r: len(r) == 1)
    return series_of(prom, container_id)


def wait_absent(prom, container_id: str) -> None:
    prom.wait_for(f'{{id="{container_id}"}}', lambda r: r == [])


def test_cadvisor_names_labels_and_values_reach_prometheus(setup):
    setup.feed.deliver(make_sample("c-values", name=TRICKY_NAME, cpu_percent=None))
    series = wait_present(setup.prom, "c-values")

    expected = {
        "container_cpu_usage_seconds_total": 2.5,
        "container_memory_usage_bytes": 50 * 2**20,
        "container_memory_working_set_bytes": 50 * 2**20,
        "container_spec_memory_limit_bytes": 2**30,
        "container_network_receive_bytes_total": 1001,
        "container_network_transmit_bytes_total": 1002,
        "container_network_receive_packets_total": 11,
        "container_network_transmit_packets_total": 12,
        "container_network_receive_errors_total": 1,
        "container_network_transmit_errors_total": 2,
        "container_network_receive_packets_dropped_total": 3,
        "container_network_transmit_packets_dropped_total": 4,
        "container_fs_reads_bytes_total": 4096,
        "container_fs_writes_bytes_total": 8192,
        "container_last_seen": 1_700_000_000.25,
        "statspout_container_memory_usage_percent": 4.88,
    }
    # The null CPU percent has no series at all, rather than a zero.
    assert {name: float(row["value"][1]) for name, row in series.items()} == pytest.approx(expected)
    for row in series.values():
        labels = row["metric"]
        assert labels["name"] == TRICKY_NAME
        assert (labels["image"], labels["host"]) == ("nginx:1.27", "node-1")
        assert labels["container_label_com_docker_compose_project"] == 'shop, "eu"=1'
        assert not any("secret" in key for key in labels)
    assert series["container_cpu_usage_seconds_total"]["metric"]["cpu"] == "total"


def test_control_characters_and_identity_like_label_keys_arrive_intact(setup):
    # Control characters in values survive the exposition format's escaping unchanged.
    value = "a\tb\nc\rd\x01e é"
    setup.feed.deliver(make_sample("c-control", name="web\nnext\tline",
                                   labels={LABEL_KEY: value}))
    series = wait_present(setup.prom, "c-control")
    labels = series["container_last_seen"]["metric"]
    assert labels["name"] == "web\nnext\tline"
    assert labels["container_label_com_docker_compose_project"] == value


def test_a_label_named_like_an_identity_label_never_replaces_it() -> None:
    sink = prometheus_sink(free_port(), label_names=["name,id,host"])
    sink.write(make_sample("c-real", name="real", labels={"name": "spoofed", "id": "x"}))
    families = text_string_to_metric_families(sink.exposition()[0].decode())
    metric = next(m for m in families if m.name == "container_last_seen")
    assert metric.samples[0].labels == {
        "id": "c-real", "name": "real", "image": "nginx:1.27", "host": "node-1",
        "container_label_name": "spoofed", "container_label_id": "x",
        "container_label_host": "",
    }


def test_counters_are_counters_and_gauges_are_gauges(setup):
    setup.feed.deliver(make_sample("c-types"))
    wait_present(setup.prom, "c-types")
    # Prometheus scrapes OpenMetrics, whose counter families are named without "_total";
    # the samples carry it (see the test above).
    types = {name: entries[0]["type"] for name, entries in setup.prom.api("metadata").items()
             if name.startswith(("container_", "statspout_", "machine_"))}
    counters = {"container_cpu_usage_seconds", "container_fs_reads_bytes",
                "container_fs_writes_bytes"} | {
        f"container_network_{way}_{what}" for way in ("receive", "transmit")
        for what in ("bytes", "packets", "errors", "packets_dropped")}
    gauges = {"container_memory_usage_bytes", "container_memory_working_set_bytes",
              "container_spec_memory_limit_bytes", "container_last_seen",
              "statspout_container_cpu_usage_percent", "statspout_container_memory_usage_percent",
              "machine_cpu_cores", "statspout_container_state"}
    # Untyped (cAdvisor's counter without "_total"): Prometheus says "unknown".
    assert types["container_memory_failcnt"] == "unknown"
    assert {name: types[name] for name in counters | gauges} == {
        **dict.fromkeys(counters, "counter"), **dict.fromkeys(gauges, "gauge")}
    assert types == {family.name: {"untyped": "unknown"}.get(family.kind, family.kind)
                     for family in FAMILIES}


def test_a_newer_sample_replaces_the_value(setup):
    setup.feed.deliver(make_sample("c-latest", cpu_usage_ns=1_000_000_000))
    wait_present(setup.prom, "c-latest")
    setup.feed.deliver(make_sample("c-latest", cpu_usage_ns=7_000_000_000, seq=2))
    setup.prom.wait_for('container_cpu_usage_seconds_total{id="c-latest"}',
                        lambda r: len(r) == 1 and float(r[0]["value"][1]) == 7.0)


@pytest.mark.parametrize("action", ["stop", "destroy"])
def test_series_go_away_when_the_container_stops_or_is_destroyed(setup, action):
    gone, kept = make_sample(f"c-{action}"), make_sample(f"c-{action}-neighbour")
    setup.feed.deliver(gone)
    setup.feed.deliver(kept)
    wait_present(setup.prom, gone.id)
    wait_present(setup.prom, kept.id)

    setup.feed.deliver(make_event_for(gone, action))
    wait_absent(setup.prom, gone.id)
    assert series_of(setup.prom, kept.id)


def test_a_renamed_container_comes_back_under_its_new_name(setup):
    before = make_sample("c-rename", name="old-name")
    setup.feed.deliver(before)
    wait_present(setup.prom, before.id)

    setup.feed.deliver(make_event_for(before, "rename", name="new name", old_name="old-name"))
    wait_absent(setup.prom, before.id)
    setup.feed.deliver(make_sample("c-rename", name="new name", seq=3))
    series = wait_present(setup.prom, before.id)
    assert {row["metric"]["name"] for row in series.values()} == {"new name"}
    assert setup.prom.query('{name="old-name"}') == []


def test_series_not_refreshed_go_away(setup):
    stale, fresh = make_sample("c-stale"), make_sample("c-fresh")
    prom = setup.prom
    # Refresh both until Prometheus has scraped them, then only the fresh one.
    deadline = time.monotonic() + 20
    while not (prom.query('container_last_seen{id="c-stale"}')
               and prom.query('container_last_seen{id="c-fresh"}')):
        assert time.monotonic() < deadline, "never scraped"
        setup.short_feed.send(stale)
        setup.short_feed.send(fresh)
        time.sleep(0.3)
    deadline = time.monotonic() + 20
    while prom.query('{id="c-stale"}'):
        assert time.monotonic() < deadline, "the stale container's series stayed"
        setup.short_feed.send(fresh)
        time.sleep(0.3)
    setup.short_feed.deliver(fresh)
    text = requests.get(setup.short_url, timeout=5).text
    assert 'id="c-fresh"' in text and 'id="c-stale"' not in text


def test_label_globs_choose_the_container_labels_and_every_series_of_a_scrape_has_them(setup):
    """docs/labels.md: keys named exactly always, glob matches as seen; absent ones empty."""
    team = make_sample("c-glob-team", labels={"com.example.team": "ops", "tier": "web",
                                              "com.example.secret_key": "hidden",
                                              LABEL_KEY: "not matched"})
    zone = make_sample("c-glob-zone", labels={"com.example.zone": "eu-1"})
    setup.glob_feed.deliver(team)
    setup.glob_feed.deliver(zone)
    prom = setup.prom
    prom.wait_for('container_last_seen{id=~"c-glob-.*"}', lambda r: len(r) == 2)
    labels = {row["metric"]["id"]: {k: v for k, v in row["metric"].items()
                                    if k.startswith("container_label_")}
              for row in prom.query('container_last_seen{id=~"c-glob-.*"}')}
    # Prometheus drops empty labels: each series shows only the labels its container has.
    assert labels == {
        "c-glob-team": {"container_label_com_example_team": "ops", "container_label_tier": "web"},
        "c-glob-zone": {"container_label_com_example_zone": "eu-1"},
    }
    # On the wire every series of a family carries the same names, absent ones empty.
    (family,) = [f for f in text_string_to_metric_families(
        requests.get(setup.glob_url, timeout=5).text) if f.name == "container_last_seen"]
    names = {"container_label_com_example_team", "container_label_com_example_zone",
             "container_label_tier"}
    for served in family.samples:
        assert {k for k in served.labels if k.startswith("container_label_")} == names
    (zone_series,) = [s for s in family.samples if s.labels["id"] == "c-glob-zone"]
    assert zone_series.labels["container_label_tier"] == ""

    setup.glob_feed.deliver(make_event_for(zone, "destroy"))  # its key is seen no more
    text = requests.get(setup.glob_url, timeout=5).text
    assert "container_label_com_example_zone" not in text
    assert 'container_label_com_example_team="ops"' in text


def test_staleness_counts_intervals_since_arrival():
    now = [1000.0]
    sink = PrometheusSink(
        SimpleNamespace(address="127.0.0.1:9338", interval=5.0, stale_intervals=3,
                        label_names=None),
        clock=lambda: now[0],
    )
    sink.write(make_sample("c-clock"))
    now[0] += 14.9
    assert b'id="c-clock"' in sink.exposition()[0]
    now[0] += 0.2
    assert b'id="c-clock"' not in sink.exposition()[0]


def test_scrapes_while_the_worker_writes_are_consistent(setup):
    """The HTTP server's threads read while the worker thread writes and forgets."""
    url = setup.short_url
    sink_feed = setup.short_feed
    samples = [make_sample(f"c-race-{i}") for i in range(40)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def scrape() -> None:
        try:
            while not stop.is_set():
                response = requests.get(url, timeout=5)
                assert response.status_code == 200
                list(text_string_to_metric_families(response.text))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    scrapers = [threading.Thread(target=scrape) for _ in range(3)]
    for thread in scrapers:
        thread.start()
    try:
        for round_ in range(15):
            for sample in samples:
                sink_feed.send(sample)
                if round_ % 2:
                    sink_feed.send(make_event_for(sample, "stop"))
        sink_feed.deliver(samples[0])
    finally:
        stop.set()
        for thread in scrapers:
            thread.join(timeout=10)
    assert errors == []
    assert sink_feed.worker.counts.sink_errors == 0


def test_the_statspout_sink_command_serves_the_metrics(tmp_path):
    """The real ``statspout-sink prometheus`` process: options from flags and the environment."""
    port = free_port()
    router = RouterFeed()
    env = {**os.environ, "STATSPOUT_PROMETHEUS_STALE_INTERVALS": "100"}
    log = (tmp_path / "sink.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "statspout-sink"), "prometheus",
         "--connect", router.endpoint, "--prometheus.address", f"127.0.0.1:{port}",
         "--prometheus.label-names", f"{LABEL_KEY},tier", "--prometheus.label-names", "secret"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def families() -> dict:
        try:
            text = requests.get(url, timeout=2).text
        except requests.ConnectionError:
            return {}
        return {f.name: f for f in text_string_to_metric_families(text)}

    def wait(condition, what: str) -> dict:
        deadline = time.monotonic() + 20
        while not condition(found := families()):
            assert process.poll() is None, (tmp_path / "sink.log").read_text()
            assert time.monotonic() < deadline, f"{what} within 20 s"
            time.sleep(0.1)
        return found

    try:
        router.wait_for_subscriber()
        sample = make_sample("c-cli", name=TRICKY_NAME)
        router.send(sample)
        found = wait(lambda f: f.get("container_memory_usage_bytes", None) is not None
                     and f["container_memory_usage_bytes"].samples, "the sample served")
        (served,) = found["container_memory_usage_bytes"].samples
        assert served.value == 50 * 2**20
        assert served.labels["name"] == TRICKY_NAME
        assert served.labels["container_label_secret"] == "do not expose"  # allow-listed here
        assert found["container_cpu_usage_seconds"].type == "counter"

        router.send(make_event_for(sample, "stop"))
        wait(lambda f: f and not f["container_memory_usage_bytes"].samples, "series removed")
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=20)
        log.close()
        router.close()
    assert returncode == 0
    deprecated = [line for line in (tmp_path / "sink.log").read_text().splitlines()
                  if "deprecated" in line]
    assert len(deprecated) == 1 and "--prometheus.label-include" in deprecated[0], deprecated
