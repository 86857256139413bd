"""The REST sink behind the real worker runtime, asked over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest
import requests
from support.feed import RouterFeed, SinkWorkerThread
from support.ports import free_port
from support.samples import make_container_stats, make_engine, make_event_for, make_state

from statspout.sinks.latest import LatestSamples
from statspout.sinks.rest import OPENAPI, RestSink

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TRICKY_NAME = 'web "shop", a=b 100% ünïcødé 名前?'


# A label value with an equals sign, a comma and quotes; received bytes beyond 2**32.
make_sample = partial(make_container_stats, rx_bytes=2**40 + 1, labels={
    "com.docker.compose.project": "shop", "tier": "a=b, \"c\""})


@pytest.fixture(scope="module")
def rest():
    port = free_port()
    feed = SinkWorkerThread(RestSink(SimpleNamespace(address=f"127.0.0.1:{port}", token=TOKEN)))
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}", feed=feed)
    finally:
        feed.close()


def get(rest, path: str, headers: dict | None = AUTH, **params) -> requests.Response:
    return requests.get(rest.url + path, headers=headers, params=params, timeout=5)


def ours(rows: list[dict], prefix: str) -> list[dict]:
    """The module shares one sink: keep the rows of the test's own containers."""
    return [row for row in rows if row["id"].startswith(prefix)]


def test_stats_lists_the_latest_sample_of_each_container(rest):
    rest.feed.deliver(make_sample("list-a", cpu_percent=None))
    rest.feed.deliver(make_sample("list-b"))
    newer = make_sample("list-a", seq=5, cpu_usage_ns=9_000_000_000, cpu_percent=None)
    rest.feed.deliver(newer)

    response = get(rest, "/stats")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert ours(response.json(), "list-") == [newer.to_dict(), make_sample("list-b").to_dict()]


def test_one_container_by_a_name_with_spaces_quotes_commas_equals_and_unicode(rest):
    sample = make_sample("named", name=TRICKY_NAME)
    rest.feed.deliver(sample)
    response = get(rest, "/stats/" + quote(TRICKY_NAME, safe=""))
    assert response.status_code == 200
    assert response.json() == sample.to_dict()


def test_unknown_names_and_paths_are_404_with_a_json_error(rest):
    for path in ("/stats/" + quote("nobody here", safe=""), "/nothing", "/stats/"):
        response = get(rest, path)
        assert response.status_code == 404, path
        assert "error" in response.json()
    assert get(rest, "/stats/%FF%FE").status_code == 400  # not UTF-8


def test_host_and_label_filters(rest):
    one = make_sample("filter-1", host="alpha", labels={"team": "x=y", "env": "prod"})
    two = make_sample("filter-2", host="beta", labels={"team": "x=y", "env": "dev"})
    three = make_sample("filter-3", host="beta", labels={"team": "z"})
    for sample in (one, two, three):
        rest.feed.deliver(sample)

    def ids(**params) -> list[str]:
        response = get(rest, "/stats", **params)
        assert response.status_code == 200
        return [row["id"] for row in ours(response.json(), "filter-")]

    assert ids(host="beta") == ["filter-2", "filter-3"]
    assert ids(label="team=x=y") == ["filter-1", "filter-2"]
    assert ids(label=["team=x=y", "env=dev"]) == ["filter-2"]
    assert ids(label="team=x=y", host="alpha") == ["filter-1"]
    assert ids(label="team=nope") == []
    # The router's selector syntax, without its "label=" (docs/labels.md).
    assert ids(label="env") == ["filter-1", "filter-2"]
    assert ids(label="env!=prod") == ["filter-2", "filter-3"]  # absent counts as another value
    assert ids(label=["team=x=y", "env!=dev"]) == ["filter-1"]
    for bad_filter in ("", "=x"):
        bad = get(rest, "/stats", label=bad_filter)
        assert bad.status_code == 400 and "label filter" in bad.json()["error"], bad_filter


def test_a_name_on_two_hosts_needs_the_host(rest):
    rest.feed.deliver(make_sample("twin-1", host="alpha", name="twin"))
    rest.feed.deliver(make_sample("twin-2", host="beta", name="twin"))
    assert get(rest, "/stats/twin").status_code == 409
    response = get(rest, "/stats/twin", host="beta")
    assert response.status_code == 200 and response.json()["id"] == "twin-2"


@pytest.mark.parametrize("action", ["stop", "destroy"])
def test_a_stopped_or_destroyed_container_is_removed(rest, action):
    sample = make_sample(f"gone-{action}")
    rest.feed.deliver(sample)
    assert get(rest, f"/stats/{sample.name}").status_code == 200
    rest.feed.deliver(make_event_for(sample, action))
    assert get(rest, f"/stats/{sample.name}").status_code == 404
    assert ours(get(rest, "/stats").json(), f"gone-{action}") == []


def test_a_renamed_container_is_rekeyed_by_its_next_sample(rest):
    before = make_sample("renamed", name="before")
    rest.feed.deliver(before)
    rest.feed.deliver(make_event_for(before, "rename", name="after now", old_name="before"))
    assert get(rest, "/stats/before").status_code == 404
    assert ours(get(rest, "/stats").json(), "renamed") == []
    after = make_sample("renamed", name="after now", seq=3)
    rest.feed.deliver(after)
    assert get(rest, "/stats/after%20now").json() == after.to_dict()
    assert get(rest, "/stats/before").status_code == 404


@pytest.mark.parametrize("path", ["/stats", "/stats/anything"])
def test_data_needs_the_bearer_token(rest, path):
    for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}):
        response = get(rest, path, headers=headers)
        assert response.status_code == 401, headers
        assert "error" in response.json()
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_healthz_and_openapi_are_open(rest):
    rest.feed.deliver(make_sample("health"))
    health = get(rest, "/healthz", headers=None)
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["containers"] >= 1
    spec = get(rest, "/openapi.json", headers=None)
    assert spec.status_code == 200 and spec.json() == OPENAPI


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_only_get_is_allowed(rest, method):
    response = requests.request(method, rest.url + "/stats", headers=AUTH, timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert "error" in response.json()


def test_the_openapi_description_matches_what_is_served(rest):
    assert OPENAPI["openapi"].startswith("3.")
    assert {"/stats", "/stats/{name}", "/healthz"} <= set(OPENAPI["paths"])
    schema = OPENAPI["components"]["schemas"]["ContainerStats"]
    sample = make_sample("schema")
    rest.feed.deliver(sample)
    served = get(rest, "/stats/name-schema").json()
    assert set(schema["required"]) == set(served) == set(schema["properties"])


def test_states_and_engines_are_served_and_described(rest):
    """/states keeps a stopped container's latest state (its sample leaves /stats); /engines
    has one entry per host; both as the OpenAPI description says."""
    sample = make_sample("st-1", name="crashing")
    state = make_state(id="st-1", name="crashing", host="node-1", labels=sample.labels)
    other = make_state(id="st-2", name="other", host="elsewhere", status="running",
                       exit_code=None, health=None, health_failing_streak=None)
    for message in (sample, state, other, make_engine(host="node-1"),
                    make_engine(host="elsewhere", cpus=8), make_engine(2, host="node-1")):
        rest.feed.deliver(message)
    rest.feed.deliver(make_event_for(sample, "stop"))
    assert get(rest, "/stats/crashing").status_code == 404
    assert get(rest, "/states/crashing").json() == state.to_dict()
    assert ours(get(rest, "/states").json(), "st-") == [other.to_dict(), state.to_dict()]
    assert ours(get(rest, "/states", host="node-1").json(), "st-") == [state.to_dict()]
    assert ours(get(rest, "/states", label="tier").json(), "st-") == [state.to_dict()]
    assert get(rest, "/states/other", host="node-1").status_code == 404
    engines = get(rest, "/engines").json()
    assert [(e["host"], e["seq"], e["cpus"]) for e in engines] == [
        ("elsewhere", 1, 8), ("node-1", 2, 2)]
    assert get(rest, "/engines", host="elsewhere").json() == [engines[0]]
    assert get(rest, "/states", headers=None).status_code == 401
    assert get(rest, "/engines", headers=None).status_code == 401
    schemas = OPENAPI["components"]["schemas"]
    for name, served in (("ContainerState", state.to_dict()), ("EngineInfo", engines[0])):
        assert set(schemas[name]["required"]) == set(served) == set(schemas[name]["properties"])
    assert {"/states", "/states/{name}", "/engines"} <= set(OPENAPI["paths"])
    # A destroyed container's state goes too.
    rest.feed.deliver(make_event_for(sample, "destroy"))
    assert get(rest, "/states/crashing").status_code == 404


def test_a_container_expires_after_a_few_of_its_own_intervals():
    """Staleness by each message's own interval_s; without one, a sample stays (wire 1.0)."""


    now = [0.0]
    table = LatestSamples(clock=lambda: now[0], stale_intervals=3)
    table.put(make_sample("slow", interval_s=20.0))
    table.put(make_sample("fast", interval_s=1.0))
    table.put(make_sample("old"))  # no interval_s
    table.put_state(make_state(id="fast", interval_s=1.0))
    table.put_engine(make_engine(interval_s=1.0))
    now[0] = 3.5
    assert [s.id for s in table.current()] == ["old", "slow"]
    assert table.states() == [] and table.engines() == []
    now[0] = 61.0
    assert [s.id for s in table.current()] == ["old"]
    # Without stale_intervals, max_age applies to everything, as before wire 1.1.
    legacy = LatestSamples(10.0, lambda: now[0])
    legacy.put(make_sample("slow", interval_s=20.0))
    now[0] += 11
    assert legacy.current() == []


def test_the_openapi_description_is_valid_openapi_3():
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(OPENAPI)


def test_reads_while_the_worker_writes(rest):
    """The server's threads read while the worker thread writes and forgets."""
    samples = [make_sample(f"race-{i}") for i in range(40)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                response = get(rest, "/stats")
                assert response.status_code == 200
                assert isinstance(response.json(), list)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for round_ in range(15):
            for sample in samples:
                rest.feed.send(sample)
                if round_ % 2:
                    rest.feed.send(make_event_for(sample, "stop"))
        rest.feed.deliver(samples[0])
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=10)
    assert errors == []
    # The last round sent samples and no stops.
    assert len(ours(get(rest, "/stats").json(), "race-")) == 40


def test_the_statspout_sink_command_serves_rest(tmp_path):
    """The real ``statspout-sink rest`` process, configured through the environment."""
    port = free_port()
    router = RouterFeed()
    env = {**os.environ, "STATSPOUT_REST_ADDRESS": f"127.0.0.1:{port}",
           "STATSPOUT_REST_TOKEN": TOKEN}
    log_path = tmp_path / "sink.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "statspout-sink"), "rest", "--connect",
         router.endpoint],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/stats/" + quote(TRICKY_NAME, safe="")
    try:
        router.wait_for_subscriber()
        sample = make_sample("cli", name=TRICKY_NAME)
        router.send(sample)
        deadline = time.monotonic() + 20
        while True:
            try:
                response = requests.get(url, headers=AUTH, timeout=2)
                if response.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the sample was not served within 20 s"
            time.sleep(0.1)
        assert response.json() == sample.to_dict()
        assert requests.get(url, timeout=2).status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=20)
        log.close()
        router.close()
    assert returncode == 0
    assert TOKEN not in log_path.read_text()  # a secret option is never logged


def test_the_page_is_served_without_the_token_and_shows_no_container(rest):
    for path, kind in (("/", "text/html"), ("/web/app.js", "text/javascript"),
                       ("/web/style.css", "text/css")):
        response = get(rest, path, headers=None)
        assert response.status_code == 200, path
        assert response.headers["Content-Type"].startswith(kind)
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "name-" not in get(rest, "/", headers=None).text
    assert get(rest, "/web/other.js", headers=None).status_code == 401  # not a page file


def test_events_stream_the_latest_samples_with_the_token_in_a_header_or_the_query(rest):
    sample = make_sample("events-1", name="streamed")
    rest.feed.deliver(sample)
    assert get(rest, "/events", headers=None).status_code == 401
    assert get(rest, "/events", headers=None, token="wrong").status_code == 401
    for headers, params in ((AUTH, {}), (None, {"token": TOKEN})):
        with requests.get(rest.url + "/events", headers=headers, params=params, stream=True,
                          timeout=5) as response:
            assert response.status_code == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            line = next(line for line in response.iter_lines() if line.startswith(b"data: "))
        snapshot = json.loads(line[len(b"data: "):])
        rows = [dict(zip(snapshot["fields"], row, strict=True)) for row in snapshot["rows"]]
        # A sample without a state yet: its figures, and null state fields.
        assert ours(rows, "events-1") == [
            {field: getattr(sample, field, None) for field in snapshot["fields"]}]
