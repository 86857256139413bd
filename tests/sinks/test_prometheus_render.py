"""The Prometheus sink's own exposition text: both formats parse back (with prometheus_client's
parsers) to every figure and label exactly, tricky label values included, and Debian's
``promtool check metrics`` accepts the text format."""

from __future__ import annotations

import shutil
import subprocess
from types import SimpleNamespace

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families
from support.samples import make_container_stats

from statspout.sinks.prometheus import FAMILIES, PrometheusSink
from statspout.wire import ContainerStats

KEY = "com.docker.compose.project"
TRICKY = ['back\\slash "quoted"', "new\nline\ttab\r", "ünïcødé 名前 🐳", "", "a=b,c}{"]


def sink_with(samples: list[ContainerStats]) -> PrometheusSink:
    sink = PrometheusSink(SimpleNamespace(address=("127.0.0.1", 0), interval=5.0,
                                          stale_intervals=3, label_names=[KEY, "absent"]))
    for sample in samples:
        sink.write(sample)
    return sink


def tricky_samples() -> list[ContainerStats]:
    return [make_container_stats(
        f"c-{n}", name=text or "x", image=text, host=f"node {text}", labels={KEY: text},
        cpu_percent=None if n == 1 else 0.1 * n, mem_percent=None if n == 2 else 100.0 / 3,
        rx_bytes=2**64 - 1 - n, cpu_usage_ns=10**9 + n, timestamp=1_700_000_000_250_000_000 + n,
    ) for n, text in enumerate(TRICKY)]


def expected_series(samples: list[ContainerStats]) -> dict[tuple[str, tuple], float | int]:
    """(series name, sorted labels) → value, from the data model table."""
    expected = {}
    for name, kind, _, attribute, divisor, own in FAMILIES:
        for sample in samples:
            value = getattr(sample, attribute)
            if value is None:
                continue
            labels = {"id": sample.id, "name": sample.name, "image": sample.image,
                      "host": sample.host, "container_label_" + KEY.replace(".", "_"):
                      sample.labels.get(KEY, ""), "container_label_absent": ""}
            if own:
                labels["cpu"] = "total"
            series = f"{name}_total" if kind == "counter" else name
            expected[(series, tuple(sorted(labels.items())))] = (
                value / divisor if divisor else value)
    return expected


def parsed_series(families: object) -> dict[tuple[str, tuple], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in families for sample in family.samples}  # type: ignore[attr-defined]


def test_both_formats_parse_back_to_every_figure_and_label() -> None:
    samples = tricky_samples()
    sink = sink_with(samples)
    text, text_type = sink.exposition("text/plain")
    openmetrics, openmetrics_type = sink.exposition(
        "application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.4")
    assert text_type.startswith("text/plain; version=0.0.4")
    assert openmetrics_type.startswith("application/openmetrics-text")
    assert openmetrics.endswith(b"# EOF\n") and not text.endswith(b"# EOF\n")
    expected = expected_series(samples)
    # The text parser reads integers as integers: they are written exactly.
    assert parsed_series(text_families(text.decode())) == expected
    as_floats = {key: float(value) for key, value in expected.items()}
    assert {key: float(value) for key, value in parsed_series(
        openmetrics_families(openmetrics.decode())).items()} == as_floats
    # 17 families × 5 containers, less the two null percentages.
    assert len(expected) == 17 * 5 - 2


def test_types_and_help_per_family_in_both_formats() -> None:
    sink = sink_with(tricky_samples())
    for body, parse in ((sink.exposition()[0], text_families),
                        (sink.exposition("application/openmetrics-text")[0],
                         openmetrics_families)):
        families = {family.name: (family.type, family.documentation)
                    for family in parse(body.decode())}
        assert families == {name: (kind, doc) for name, kind, doc, *_ in FAMILIES}


def test_an_empty_table_renders_headers_only() -> None:
    text = sink_with([]).exposition()[0].decode()
    assert all(line.startswith("#") for line in text.splitlines())


def test_promtool_accepts_the_text_format() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/test.sh)"
    body = sink_with(tricky_samples()).exposition()[0]
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
