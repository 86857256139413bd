"""The Prometheus sink's own exposition text: both formats parse back (with prometheus_client's
parsers) to every figure and label exactly, tricky label values included, and Debian's
``promtool check metrics`` accepts the text format."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families
from support.samples import make_container_stats, make_engine, make_event, make_state

from statspout.sinks import latest
from statspout.sinks.prometheus import (
    FAMILIES,
    OneOf,
    PerEntry,
    PrometheusSink,
    _expanded,
    entry_rows,
)
from statspout.wire import CONTAINER_STATUSES, ContainerState, ContainerStats, EngineInfo

KEY = "com.docker.compose.project"
TRICKY = ['back\\slash "quoted"', "new\nline\ttab\r", "ünïcødé 名前 🐳", "", "a=b,c}{"]


def sink_with(samples: list[ContainerStats], states: Sequence[ContainerState] = (),
              engines: Sequence[EngineInfo] = ()) -> PrometheusSink:
    sink = PrometheusSink(SimpleNamespace(address=("127.0.0.1", 0), interval=5.0,
                                          stale_intervals=3, label_names=[KEY, "absent"]))
    for sample in samples:
        sink.write(sample)
    for state in states:
        sink.handle_state(state)
    for engine in engines:
        sink.handle_engine(engine)
    return sink


def tricky_samples() -> list[ContainerStats]:
    return [make_container_stats(
        f"c-{n}", name=text or "x", image=text, host=f"node {text}", labels={KEY: text},
        cpu_percent=None if n == 1 else 0.1 * n, mem_percent=None if n == 2 else 100.0 / 3,
        rx_bytes=2**64 - 1 - n, cpu_usage_ns=10**9 + n, timestamp=1_700_000_000_250_000_000 + n,
    ) for n, text in enumerate(TRICKY)]


def wire_1_1_samples() -> list[ContainerStats]:
    """Samples of a 1.1 collector: per interface and device, with tricky interface names."""
    return [make_container_stats(
        f"d-{n}", name=f"new {text}", labels={KEY: text}, mem_cgroup_usage=10**8 + n,
        cpu_user_ns=7 * 10**8, cpu_system_ns=10**8, cpu_periods=n, cpu_throttled_periods=n,
        cpu_throttled_ns=25 * 10**7 * n, mem_rss=1, mem_cache=2, mem_mapped_file=3,
        mem_swap=None if n else 4, mem_failcnt=None if n else 5, mem_max_usage=6, oom_events=n,
        net_interfaces={"eth0": {"rx_bytes": 1, "tx_bytes": 2}, text or "x": {"rx_bytes": 3}},
        blk_devices={"8:0": {"read_bytes": 9, "write_bytes": 10}} if n else {},
    ) for n, text in enumerate(TRICKY)]


def states_and_engines() -> tuple[list[ContainerState], list[EngineInfo]]:
    states = [make_state(seq=n, id=f"c-{n}", name=text or "x", host=f"node {text}",
                         labels={KEY: text}, status=status,
                         health=None if n % 2 else "unhealthy",
                         health_failing_streak=None if n % 2 else n,
                         exit_code=None if status == "running" else n,
                         started_at=None if n == 4 else 1_700_000_000_999_999_999 + n)
              for n, (text, status) in enumerate(zip(TRICKY, CONTAINER_STATUSES, strict=False))]
    engines = [make_engine(host=f"node {text}") for text in TRICKY]
    return states, engines


def expected_series(samples: list[ContainerStats], states: Sequence[ContainerState] = (),
                    engines: Sequence[EngineInfo] = ()) -> dict[tuple[str, tuple], float | int]:
    """(series name, sorted labels) → value, from the data model table."""
    expected = {}
    sources: dict[str, Sequence[Any]] = {"stats": samples, "state": states, "engine": engines}
    for family in FAMILIES:
        for message in sources[family.source]:
            if family.source == "engine":
                labels = {"host": message.host}
            else:
                labels = {"id": message.id, "name": message.name, "image": message.image,
                          "host": message.host, "container_label_" + KEY.replace(".", "_"):
                          message.labels.get(KEY, ""), "container_label_absent": ""}
            if family.own_labels:
                labels["cpu"] = "total"
            series = f"{family.name}_total" if family.kind == "counter" else family.name
            if family.per is not None:
                entries = [(dict([extra]) if extra else {}, value)
                           for extra, value in family.per(message)]
            else:
                value = (getattr(message, family.value) if isinstance(family.value, str)
                         else family.value(message))
                entries = [({}, value / family.divisor if family.divisor and value is not None
                             else value)]
            for extra, value in entries:
                if value is not None:
                    expected[(series, tuple(sorted({**labels, **extra}.items())))] = value
    return expected


def parsed_series(families: object) -> dict[tuple[str, tuple], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in families for sample in family.samples}  # type: ignore[attr-defined]


def test_both_formats_parse_back_to_every_figure_and_label() -> None:
    samples = tricky_samples() + wire_1_1_samples()
    states, engines = states_and_engines()
    sink = sink_with(samples, states, engines)
    text, text_type = sink.exposition("text/plain")
    openmetrics, openmetrics_type = sink.exposition(
        "application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.4")
    assert text_type.startswith("text/plain; version=0.0.4")
    assert openmetrics_type.startswith("application/openmetrics-text")
    assert openmetrics.endswith(b"# EOF\n") and not text.endswith(b"# EOF\n")
    expected = expected_series(samples, states, engines)
    # The text parser reads integers as integers: they are written exactly.
    assert parsed_series(text_families(text.decode())) == expected
    as_floats = {key: float(value) for key, value in expected.items()}
    assert {key: float(value) for key, value in parsed_series(
        openmetrics_families(openmetrics.decode())).items()} == as_floats
    # Every family has series; a 1.0 sample none of the 1.1 figures.
    assert {series for series, _ in expected} >= {
        f"{family.name}_total" if family.kind == "counter" else family.name
        for family in FAMILIES}
    assert ("container_network_receive_bytes_total", tuple(sorted({
        "id": "d-2", "name": "new ünïcødé 名前 🐳", "image": "nginx:1.27", "host": "node-1",
        "container_label_com_docker_compose_project": "ünïcødé 名前 🐳",
        "container_label_absent": "", "interface": "ünïcødé 名前 🐳"}.items()))) in expected
    assert not [key for key in expected if key[0] == "container_cpu_cfs_periods_total"
                and ("id", "d-0") in key[1]]  # no quota (0 periods): no CFS series


def test_oom_events_count_kills_as_cadvisor_does() -> None:
    """The cgroup's kill counter where the collector read it; Docker's events only without it
    (they come one per OOM notification and can outnumber the kills)."""
    samples = [make_container_stats("cgroup-source", oom_kills=2, oom_events=5),
               make_container_stats("api-source", oom_kills=None, oom_events=5)]
    text, _ = sink_with(samples).exposition("text/plain")
    found = {dict(key[1])["id"]: value
             for key, value in parsed_series(text_families(text.decode())).items()
             if key[0] == "container_oom_events_total"}
    assert found == {"cgroup-source": 2, "api-source": 5}


def test_types_and_help_per_family_in_both_formats() -> None:
    sink = sink_with(tricky_samples(), *states_and_engines())
    assert b"# TYPE container_memory_failcnt untyped\n" in sink.exposition()[0]
    for body, parse in ((sink.exposition()[0], text_families),
                        (sink.exposition("application/openmetrics-text")[0],
                         openmetrics_families)):
        families = {family.name: (family.type, family.documentation)
                    for family in parse(body.decode())}
        # Both parsers call untyped "unknown".
        assert families == {family.name: ("unknown" if family.kind == "untyped" else family.kind,
                                          family.help) for family in FAMILIES}


def test_an_empty_table_renders_headers_only() -> None:
    text = sink_with([]).exposition()[0].decode()
    assert all(line.startswith("#") for line in text.splitlines())


def test_promtool_accepts_the_text_format() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/test.sh)"
    body = sink_with(tricky_samples() + wire_1_1_samples(), *states_and_engines()).exposition()[0]
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_states_and_engines_expire_after_their_own_intervals_and_destroy_forgets() -> None:
    now = [0.0]
    sink = PrometheusSink(SimpleNamespace(address=("127.0.0.1", 0), interval=5.0,
                                          stale_intervals=3, label_names=None),
                          clock=lambda: now[0])
    sink.handle_state(make_state(id="slow", interval_s=10.0))
    sink.handle_state(make_state(id="fast", interval_s=1.0))
    sink.handle_engine(make_engine(host="h1", interval_s=1.0))
    now[0] = 3.5  # past 3 × 1 s, within 3 × 10 s
    assert [state.id for state in sink.samples.states()] == ["slow"]
    assert sink.samples.engines() == []
    sink.handle_event(make_event(action="stop", id="slow", host="node-1"))
    # a stopped container keeps its state (exited, exit code)
    assert [state.id for state in sink.samples.states()] == ["slow"]
    sink.handle_event(make_event(action="destroy", id="slow", host="node-1"))
    assert sink.samples.states() == [] and "statspout_container_state{" not in (
        sink.exposition()[0].decode())


def test_the_tables_are_bounded_and_count_what_they_refuse(monkeypatch) -> None:
    monkeypatch.setattr(latest, "MAX_CONTAINERS", 2)
    table = latest.LatestSamples(stale_intervals=3)
    for n in range(4):
        table.put_state(make_state(id=f"c{n}"))
    table.put_state(make_state(id="c0", status="running"))  # a known key: replaced
    assert sorted(state.id for state in table.states()) == ["c0", "c1"]
    assert table.counters()["refused_states"] == 2
    assert {state.id: state.status for state in table.states()}["c0"] == "running"


def test_the_per_entry_and_one_of_families_write_what_their_data_model_gives() -> None:
    """The network, block device, state and health families are written from prepared rows
    (sinks/prometheus.py: PerEntry.lines, OneOf.lines); their lines are exactly those of the
    series their data model (``Family.per``) gives: tricky names, 1.0 samples without entries,
    missing keys and null statuses included."""
    samples = tricky_samples() + wire_1_1_samples()
    states, _ = states_and_engines()
    sink = sink_with(samples, states)
    collector = sink.collector
    checked = 0
    for family in FAMILIES:
        messages: Sequence[Any] = samples if family.source == "stats" else states
        labels = collector._label_sets(list(messages))
        if isinstance(family.per, PerEntry):
            fast = family.per.lines(family.name, entry_rows(family.per, messages, labels))
        elif isinstance(family.per, OneOf):
            fast = family.per.lines(family.name, messages, labels)
        else:
            continue
        assert fast == _expanded(family.name, family.per, messages, labels), family.name
        checked += 1
    assert checked == 12  # 8 network, 2 block device, state and health
