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
  ``container_label_<key>`` per container label key passing ``--prometheus.label-include`` /
  ``--prometheus.label-exclude`` (globs, docs/labels.md; the deprecated
  ``--prometheus.label-names`` is an exact-key include); the key with every character outside
  ``[a-zA-Z0-9_]`` turned into ``_``. Within one scrape every series carries the same label
  names: each key named exactly, plus each key a glob matches on any container in the table at
  that scrape (sorted); a container without one has it empty.

Served by the sinks' HTTP server (http_serving.py: the REST sink's limits and time-outs, at
their defaults); ``/metrics`` answers as prometheus_client's own server did, any other path 404.

Memory: the wire carries usage minus inactive file cache, which is what cAdvisor calls the
working set. The total including the cache is not on the wire, so ``container_memory_usage_bytes``
carries the same figure (what ``docker stats`` shows as usage); it is below cAdvisor's usage by
the inactive file cache, never above.

Delivery: latest value only. A sample is delivered once it is in the table ``/metrics`` renders;
a sample that a newer one replaces before a scrape is never seen by Prometheus. A container's
series go away on its stop, rename (until its next sample, under the new name) and destroy
events, and when no sample arrived for ``stale-intervals`` × ``interval`` seconds.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import SimpleNamespace

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

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

# (metric name without _total, help, figure of a sample in base units)
COUNTERS: tuple[tuple[str, str, Callable[[ContainerStats], float]], ...] = (
    ("container_network_receive_bytes", "Bytes received, all interfaces", lambda s: s.rx_bytes),
    ("container_network_transmit_bytes", "Bytes sent, all interfaces", lambda s: s.tx_bytes),
    ("container_network_receive_packets", "Packets received", lambda s: s.rx_packets),
    ("container_network_transmit_packets", "Packets sent", lambda s: s.tx_packets),
    ("container_network_receive_errors", "Receive errors", lambda s: s.rx_errors),
    ("container_network_transmit_errors", "Transmit errors", lambda s: s.tx_errors),
    ("container_network_receive_packets_dropped", "Received packets dropped",
     lambda s: s.rx_dropped),
    ("container_network_transmit_packets_dropped", "Sent packets dropped",
     lambda s: s.tx_dropped),
    ("container_fs_reads_bytes", "Bytes read from block devices", lambda s: s.blk_read_bytes),
    ("container_fs_writes_bytes", "Bytes written to block devices", lambda s: s.blk_write_bytes),
)
GAUGES: tuple[tuple[str, str, Callable[[ContainerStats], float | None]], ...] = (
    ("container_memory_usage_bytes",
     "Memory usage minus inactive file cache (same figure as the working set)",
     lambda s: s.mem_usage),
    ("container_memory_working_set_bytes", "Memory usage minus inactive file cache",
     lambda s: s.mem_usage),
    ("container_spec_memory_limit_bytes", "Memory limit (the host's memory when unlimited)",
     lambda s: s.mem_limit),
    ("container_last_seen", "When the sample was read, seconds since the epoch",
     lambda s: s.timestamp / 1e9),
    ("statspout_container_cpu_usage_percent", "CPU use over the last interval; 100 = one core",
     lambda s: s.cpu_percent),
    ("statspout_container_memory_usage_percent", "Memory usage / limit x 100",
     lambda s: s.mem_percent),
)


def label_name(key: str) -> str:
    """``com.docker.compose.project`` → ``container_label_com_docker_compose_project``."""
    return "container_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


class ContainerCollector:
    """A prometheus_client custom collector that renders LatestSamples on every scrape."""

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

    def describe(self) -> list[Metric]:
        return []  # the metric names are known only from samples; no registration-time check

    def collect(self) -> Iterator[Metric]:
        samples = self._samples.current()
        extra = self._label_keys(samples)
        label_names = ["id", "name", "image", "host", *extra]
        keys = tuple(extra.values())
        rows = [(sample, [sample.id, sample.name, sample.image, sample.host,
                          *(sample.labels.get(key, "") for key in keys)])
                for sample in samples]
        cpu = CounterMetricFamily("container_cpu_usage_seconds_total", "Cumulative CPU time",
                                  labels=[*label_names, "cpu"])
        for sample, labels in rows:
            cpu.add_metric([*labels, "total"], sample.cpu_usage_ns / 1e9)
        yield cpu
        for name, doc, figure in COUNTERS:
            family = CounterMetricFamily(name, doc, labels=label_names)
            for sample, labels in rows:
                family.add_metric(labels, figure(sample))
            yield family
        for name, doc, gauge_figure in GAUGES:
            gauge = GaugeMetricFamily(name, doc, labels=label_names)
            for sample, labels in rows:
                value = gauge_figure(sample)
                if value is not None:
                    gauge.add_metric(labels, value)
            yield gauge


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
        self.registry = CollectorRegistry(auto_describe=False)
        labels = label_key_filter(settings, log, self.name, "label-names",
                                  split_values(getattr(settings, "label_names", None)))
        self.registry.register(ContainerCollector(self.samples, labels))
        self._server: HttpServerThread | None = None

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        """``/metrics`` as prometheus_client's own server answers it: the text format
        (``generate_latest``), or OpenMetrics when the scraper asks for it (Prometheus does);
        ``?name[]=`` keeps only those families; gzip when accepted."""
        if request.path != "/metrics":
            return web.Response(status=404, text="only /metrics is served here\n")
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        names = request.query.getall("name[]", [])
        registry = self.registry.restricted_registry(names) if names else self.registry
        response = web.Response(body=encode(registry), headers={"Content-Type": content_type})
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
