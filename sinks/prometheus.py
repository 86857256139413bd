"""The Prometheus sink: the latest sample of every container, served at ``/metrics``.

Data model (cAdvisor's names, so its dashboards work unchanged; base units):

- counters: ``container_cpu_usage_seconds_total{cpu="total"}`` (cpu_usage_ns / 1e9),
  ``container_network_{receive,transmit}_bytes_total``,
  ``container_network_{receive,transmit}_packets_total``,
  ``container_network_{receive,transmit}_errors_total``,
  ``container_network_{receive,transmit}_packets_dropped_total`` (all interfaces summed),
  ``container_fs_reads_bytes_total``, ``container_fs_writes_bytes_total``.
- gauges: ``container_memory_usage_bytes`` and ``container_memory_working_set_bytes`` (both the
  wire's mem_usage, see below), ``container_spec_memory_limit_bytes``, ``container_last_seen``
  (the sample's timestamp, seconds since the epoch), ``statspout_container_cpu_usage_percent``
  and ``statspout_container_memory_usage_percent`` (no series while the figure is null).
- labels on every series: ``id``, ``name``, ``image``, ``host``, plus one
  ``container_label_<key>`` per container label that ``--prometheus.label-include`` /
  ``--prometheus.label-exclude`` let through (docs/labels.md; the key with every character
  outside ``[a-zA-Z0-9_]`` turned into ``_``; empty on a series whose container lacks it).

Memory: the wire carries usage minus inactive file cache, which is what cAdvisor calls the
working set. The total including the cache is not on the wire, so ``container_memory_usage_bytes``
carries the same figure (what ``docker stats`` shows as usage); it is below cAdvisor's usage by
the inactive file cache, never above.

Exposition: written here, not through prometheus_client's objects (one per series: seconds at
20,000 containers); OpenMetrics 1.0 when the scraper asks for it (Prometheus does), else the
text format 0.0.4. A container's label set is rendered once and kept while it is in the table.

Delivery: latest value only. A sample is delivered once it is in the table ``/metrics`` renders;
a sample that a newer one replaces before a scrape is never seen by Prometheus. A container's
series go away on its stop, rename (until its next sample, under the new name) and destroy
events, and when no sample arrived for ``stale-intervals`` × ``interval`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from types import SimpleNamespace

from aiohttp import web

from statspout import cli
from statspout.selectors import LabelKeyFilter, is_glob
from statspout.sinks.base import Option
from statspout.sinks.http_serving import (
    HttpServerThread,
    ServerLimits,
    address_of,
    server_counters,
)
from statspout.sinks.label_options import label_key_filter, label_key_options, split_values
from statspout.sinks.latest import LatestSamples, LatestSampleSink
from statspout.wire import ContainerStats

log = logging.getLogger("statspout.sink.prometheus")

# (family name, type, help, the sample's attribute, divisor to base units or None, own labels).
# A counter's series are named <family>_total.
FAMILIES: tuple[tuple[str, str, str, str, float | None, str], ...] = (
    ("container_cpu_usage_seconds", "counter", "Cumulative CPU time", "cpu_usage_ns", 1e9,
     'cpu="total"'),
    ("container_network_receive_bytes", "counter", "Bytes received, all interfaces",
     "rx_bytes", None, ""),
    ("container_network_transmit_bytes", "counter", "Bytes sent, all interfaces", "tx_bytes",
     None, ""),
    ("container_network_receive_packets", "counter", "Packets received", "rx_packets", None,
     ""),
    ("container_network_transmit_packets", "counter", "Packets sent", "tx_packets", None, ""),
    ("container_network_receive_errors", "counter", "Receive errors", "rx_errors", None, ""),
    ("container_network_transmit_errors", "counter", "Transmit errors", "tx_errors", None, ""),
    ("container_network_receive_packets_dropped", "counter", "Received packets dropped",
     "rx_dropped", None, ""),
    ("container_network_transmit_packets_dropped", "counter", "Sent packets dropped",
     "tx_dropped", None, ""),
    ("container_fs_reads_bytes", "counter", "Bytes read from block devices", "blk_read_bytes",
     None, ""),
    ("container_fs_writes_bytes", "counter", "Bytes written to block devices",
     "blk_write_bytes", None, ""),
    ("container_memory_usage_bytes", "gauge",
     "Memory usage minus inactive file cache (same figure as the working set)", "mem_usage",
     None, ""),
    ("container_memory_working_set_bytes", "gauge", "Memory usage minus inactive file cache",
     "mem_usage", None, ""),
    ("container_spec_memory_limit_bytes", "gauge",
     "Memory limit (the host's memory when unlimited)", "mem_limit", None, ""),
    ("container_last_seen", "gauge", "When the sample was read, seconds since the epoch",
     "timestamp", 1e9, ""),
    ("statspout_container_cpu_usage_percent", "gauge",
     "CPU use over the last interval; 100 = one core", "cpu_percent", None, ""),
    ("statspout_container_memory_usage_percent", "gauge", "Memory usage / limit x 100",
     "mem_percent", None, ""),
)
_INTEGERS = {int}
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_FORMAT = "application/openmetrics-text; version=1.0.0; charset=utf-8"
# Both formats escape a backslash and a newline in help texts, and a double quote too in label
# values; all else is written as it is (UTF-8).
_ESCAPE_HELP = str.maketrans({"\\": "\\\\", "\n": "\\n"})
_ESCAPE_LABEL_VALUE = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})


def label_name(key: str) -> str:
    """``com.docker.compose.project`` → ``container_label_com_docker_compose_project``."""
    return "container_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


def number_text(value: float) -> str:
    """A sample value: integers exactly, floats as the shortest text that reads back the same."""
    if type(value) is int:
        return str(value)
    if value - value == 0:  # finite
        return repr(value)
    return "NaN" if value != value else ("+Inf" if value > 0 else "-Inf")


def wants_openmetrics(accept: str) -> bool:
    """Whether an Accept header lists OpenMetrics (Prometheus asks for it first)."""
    return any(part.split(";")[0].strip() == "application/openmetrics-text"
               for part in accept.split(","))


class ContainerCollector:
    """Renders LatestSamples as the exposition text of every scrape, without an object per
    series: a container's label set is rendered once and kept while it is in the table."""

    def __init__(self, samples: LatestSamples, labels: LabelKeyFilter) -> None:
        self._samples = samples
        self._labels = labels
        # Keys named exactly are label names on every scrape, whether or not a container has
        # them; glob matches are found per scrape.
        self._exact = tuple(key for key in labels.include
                            if not is_glob(key) and labels.passes(key))
        self._globbing = any(is_glob(key) for key in labels.include) or (
            bool(labels.exclude) and not labels.include)
        self._fixed_keys = self._names_of(self._exact)
        # (label names, label values) → '{id="…",…}': the containers of the last scrape only
        # (bounded by the table); replaced, not changed, so concurrent scrapes each read a
        # whole one.
        self._label_texts: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}

    @staticmethod
    def _names_of(keys: Sequence[str]) -> dict[str, str]:
        """``{label name: key}``; two keys that sanitize alike would make duplicate label
        names: the first one wins."""
        names: dict[str, str] = {}
        for key in keys:
            names.setdefault(label_name(key), key)
        return names

    def _label_keys(self, samples: Sequence[ContainerStats]) -> dict[str, str]:
        """This scrape's container labels: the exact keys, then the glob matches seen."""
        if not self._globbing:
            return self._fixed_keys
        seen = {key for sample in samples for key in self._labels.keys(sample.labels)}
        return self._names_of([*self._exact, *sorted(seen.difference(self._exact))])

    def render(self, openmetrics: bool = False) -> bytes:
        """The exposition of every current sample: OpenMetrics 1.0 or the text format 0.0.4."""
        samples = self._samples.current()
        label_sets = self._label_sets(samples)
        parts = []
        for name, kind, doc, attribute, divisor, own_labels in FAMILIES:
            series = f"{name}_total" if kind == "counter" else name
            header = series if kind == "counter" and not openmetrics else name
            parts.append(f"# HELP {header} {doc.translate(_ESCAPE_HELP)}\n"
                         f"# TYPE {header} {kind}\n".encode())
            labels = label_sets
            if own_labels:
                labels = [text[:-1] + "," + own_labels + "}" for text in label_sets]
            values: list = list(map(attrgetter(attribute), samples))
            if divisor is not None or not set(map(type, values)) <= _INTEGERS:
                values = [None if value is None else
                          number_text(value / divisor if divisor is not None else value)
                          for value in values]
                if None in values:  # no series while the figure is null
                    kept = [(text, value) for text, value in zip(labels, values, strict=True)
                            if value is not None]
                    labels, values = [text for text, _ in kept], [value for _, value in kept]
            # "{}" writes an int as number_text does; the rest is number_text's already.
            lines = map((series + "{} {}\n").format, labels, values)
            parts.append("".join(lines).encode())
        if openmetrics:
            parts.append(b"# EOF\n")
        return b"".join(parts)

    def _label_sets(self, samples: Sequence[ContainerStats]) -> list[str]:
        extra = self._label_keys(samples)
        names = ("id", "name", "image", "host", *extra)
        keys = tuple(extra.values())
        known = self._label_texts
        kept: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
        texts = []
        for sample in samples:
            values = (sample.id, sample.name, sample.image, sample.host,
                      *(sample.labels.get(key, "") for key in keys))
            cache_key = (names, values)
            text = known.get(cache_key) or kept.get(cache_key)
            if text is None:
                text = "{" + ",".join(
                    f'{name}="{value.translate(_ESCAPE_LABEL_VALUE)}"'
                    for name, value in zip(names, values, strict=True)) + "}"
            kept[cache_key] = text
            texts.append(text)
        self._label_texts = kept
        return texts


class PrometheusSink(LatestSampleSink):
    name = "prometheus"
    options = (
        Option("address", "HOST:PORT to serve /metrics on", default="127.0.0.1:9338",
               type=cli.host_port),
        Option("interval", "the collectors' interval in seconds", default=5.0,
               type=cli.seconds(0.01)),
        Option("stale-intervals", "drop a container's series after this many intervals "
               "without a sample", default=3, type=cli.positive_int),
        *label_key_options("container_label_<key> labels"),
        Option("label-names", "deprecated: an exact --prometheus.label-include",
               repeatable=True),
    )

    def __init__(self, settings: SimpleNamespace, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        super().__init__(settings,
                         LatestSamples(settings.interval * settings.stale_intervals, clock))
        self._address = address_of(settings.address)
        labels = label_key_filter(settings, log, self.name, "label-names",
                                  split_values(getattr(settings, "label_names", None)))
        self.collector = ContainerCollector(self.samples, labels)
        self._server: HttpServerThread | None = None

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The body of a scrape and its content type, in the format ``accept`` prefers."""
        openmetrics = wants_openmetrics(accept)
        return (self.collector.render(openmetrics),
                OPENMETRICS_FORMAT if openmetrics else TEXT_FORMAT)

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        """``/metrics``: OpenMetrics when the scraper asks for it (Prometheus does), else the
        text format; gzip when accepted."""
        if request.path != "/metrics":
            return web.Response(status=404, text="only /metrics is served here\n")
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        # Rendered in a worker thread: at fleet size it takes a good part of a second, which
        # must not stall the server's other connections.
        body, content_type = await asyncio.get_running_loop().run_in_executor(
            None, self.exposition, request.headers.get("Accept", ""))
        response = web.Response(body=body, headers={"Content-Type": content_type})
        response.enable_compression()  # gzip or deflate, when the scraper accepts one
        return response

    def open(self) -> None:
        self._server = HttpServerThread(self._address, self._serve, ServerLimits(), "/metrics",
                                        log)
        self._server.start()
        log.info("serving /metrics on %s:%d", *self._server.bound)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); only once open."""
        if self._server is None:
            raise RuntimeError("the prometheus sink is not open")
        return self._server.bound[1]

    def counters(self) -> Mapping[str, int]:
        return {**super().counters(), **server_counters(self._server)}

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
