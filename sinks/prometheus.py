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
  ``container_label_<key>`` per allow-listed container label (``--prometheus.label-names``; the
  key with every character outside ``[a-zA-Z0-9_]`` turned into ``_``; empty when absent).

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
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from statspout import cli
from statspout.sinks.base import Option
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


def split_names(values: list[str] | None) -> list[str]:
    """Each use of a repeatable option may itself be a comma list."""
    return [name.strip() for value in values or () for name in value.split(",") if name.strip()]


class ContainerCollector:
    """A prometheus_client custom collector that renders LatestSamples on every scrape."""

    def __init__(self, samples: LatestSamples, label_keys: list[str]) -> None:
        self._samples = samples
        # Two keys that sanitize alike would make duplicate label names: the first one wins.
        self._label_keys = dict.fromkeys(label_keys)
        names: dict[str, str] = {}
        for key in self._label_keys:
            names.setdefault(label_name(key), key)
        self._extra = names
        self._label_names = ["id", "name", "image", "host", *names]

    def describe(self) -> list[Metric]:
        return []  # the metric names are known only from samples; no registration-time check

    def collect(self) -> Iterator[Metric]:
        samples = self._samples.current()
        rows = [(sample, self._labels(sample)) for sample in samples]
        cpu = CounterMetricFamily("container_cpu_usage_seconds_total", "Cumulative CPU time",
                                  labels=[*self._label_names, "cpu"])
        for sample, labels in rows:
            cpu.add_metric([*labels, "total"], sample.cpu_usage_ns / 1e9)
        yield cpu
        for name, doc, figure in COUNTERS:
            family = CounterMetricFamily(name, doc, labels=self._label_names)
            for sample, labels in rows:
                family.add_metric(labels, figure(sample))
            yield family
        for name, doc, gauge_figure in GAUGES:
            gauge = GaugeMetricFamily(name, doc, labels=self._label_names)
            for sample, labels in rows:
                value = gauge_figure(sample)
                if value is not None:
                    gauge.add_metric(labels, value)
            yield gauge

    def _labels(self, sample: ContainerStats) -> list[str]:
        extra = [sample.labels.get(key, "") for key in self._extra.values()]
        return [sample.id, sample.name, sample.image, sample.host, *extra]


class PrometheusSink(LatestSampleSink):
    name = "prometheus"
    options = (
        Option("address", "HOST:PORT to serve /metrics on", default="127.0.0.1:9338",
               type=cli.host_port),
        Option("interval", "the collectors' interval in seconds", default=5.0,
               type=cli.seconds(0.01)),
        Option("stale-intervals", "drop a container's series after this many intervals "
               "without a sample", default=3, type=cli.positive_int),
        Option("label-names", "container label to expose as container_label_<key> "
               "(repeatable, or a comma list)", repeatable=True),
    )

    def __init__(self, settings: SimpleNamespace, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        super().__init__(settings,
                         LatestSamples(settings.interval * settings.stale_intervals, clock))
        address = settings.address
        self._address = cli.host_port(address) if isinstance(address, str) else address
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ContainerCollector(self.samples, split_names(settings.label_names)))
        self._server: WSGIServer | None = None

    def open(self) -> None:
        host, port = self._address
        self._server, _thread = start_http_server(port, host, registry=self.registry)
        log.info("serving /metrics on %s:%d", host, self._server.server_port)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); only once open."""
        if self._server is None:
            raise RuntimeError("the prometheus sink is not open")
        return self._server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
