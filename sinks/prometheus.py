"""The Prometheus sink: the latest sample and state of every container and the latest engine
figures of every host, served at ``/metrics``.

Data model (FAMILIES; docs/sinks/prometheus.md has the table): cAdvisor's names and meanings
(base units) where cAdvisor has them (``container_cpu_*``, ``container_memory_*``,
``container_network_*_total{interface}``, ``container_fs_*_bytes_total{device}``,
``container_start_time_seconds``, ``machine_*``), ``statspout_*`` where it has none (state,
health, restarts, exit code, OOM kill, engine counts). Labels on every container series:
``id``, ``name``, ``image``, ``host``, plus one ``container_label_<key>`` per container label
that ``--prometheus.label-include`` / ``--prometheus.label-exclude`` let through (docs/labels.md;
the key with every character outside ``[a-zA-Z0-9_]`` turned into ``_``; empty on a series whose
container lacks it); engine series: ``host``. A null figure has no series.

Exposition: written here, not through prometheus_client's objects (one per series: seconds at
20,000 containers); OpenMetrics 1.0 when the scraper asks for it (Prometheus does), else the
text format 0.0.4. A container's label set is rendered once and kept while it is in the table.

Delivery: latest value only. A message is delivered once it is in the table ``/metrics``
renders; one that a newer one replaces before a scrape is never seen by Prometheus. A
container's sample series go away on its stop, rename (until its next sample, under the new
name) and destroy events; its state series on rename and destroy (an exited container stays
visible); samples, states and engines when no newer one arrived for ``stale-intervals`` of
their own ``interval_s`` (a wire-1.0 collector's samples, which carry none, are taken to be at
its default 5 s: WIRE_1_0_INTERVAL_S). The tables are bounded (sinks/latest.py). There is no
interval setting (``--prometheus.interval`` went with wire 1.1): a collector at ``--interval 20``
keeps its series between samples.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter, truediv
from types import SimpleNamespace
from typing import Any

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
from statspout.sinks.latest import WIRE_1_0_INTERVAL_S, LatestSamples, LatestSampleSink
from statspout.wire import (
    CONTAINER_STATUSES,
    HEALTH_STATUSES,
    ContainerState,
    ContainerStats,
)

log = logging.getLogger("statspout.sink.prometheus")

# (the series' own label as (name, raw value), or None for none; the value)
PerSeries = list[tuple[tuple[str, str] | None, Any]]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: where its value comes from and how it is written."""

    name: str
    # "counter" (series named <name>_total), "gauge", or "untyped": cAdvisor's counters whose
    # names lack "_total" (an OpenMetrics counter must have it), written as untyped/unknown so
    # that Prometheus stores them under cAdvisor's name
    kind: str
    help: str
    # An attribute of the message, or a function of it; None: no series for that message.
    value: str | Callable[[Any], Any]
    divisor: float | None = None
    own_labels: str = ""
    # "stats" (LatestSamples), "state" (the latest state per container), "engine" (per host)
    source: str = "stats"
    # One series per (extra label name and value, or None, value) the function gives, instead
    # of ``value``.
    per: Callable[[Any], PerSeries] | None = None


def _oom_kills(sample: ContainerStats) -> int | None:
    """cAdvisor counts the kernel's OOM kills of the container (one a kill, from the kernel
    log): the cgroup's own ``oom_kill`` counter (``oom_kills``) where the collector read it (the
    cgroup source), else Docker's ``oom`` events (``oom_events``; the API source), which come
    one per OOM notification of the cgroup and can be more than the kills."""
    return sample.oom_kills if sample.oom_kills is not None else sample.oom_events


def _quota_only(attribute: str, divisor: float = 1) -> Callable[[ContainerStats], Any]:
    """cAdvisor writes the CFS figures only for a container with a CPU quota: periods > 0."""
    def value(sample: ContainerStats) -> Any:
        figure = getattr(sample, attribute)
        return figure / divisor if sample.cpu_periods and figure is not None else None
    return value


@dataclass(frozen=True, slots=True)
class PerEntry:
    """One series per entry of a map-valued figure, labelled with the entry's name, in the
    entries' order: per interface (cAdvisor has no total) or per block device "MAJOR:MINOR". A
    1.0 collector's sample (no per-entry figures) gets its total, without that label."""

    field: str  # "net_interfaces", "blk_devices"
    label: str  # "interface", "device"
    key: str  # the figure in each entry ("rx_bytes", "read_bytes", …)
    total: str  # the sample's total of it

    def __call__(self, sample: ContainerStats) -> PerSeries:
        entries = getattr(sample, self.field)
        if entries is None:
            return [(None, getattr(sample, self.total))]
        return [((self.label, name), figures[self.key])
                for name, figures in sorted(entries.items()) if self.key in figures]

    def lines(self, series: str, rows: list[tuple[str, Any]]) -> str:
        """The family's lines from ``rows`` (``entry_rows``): what ``__call__`` gives, written
        without an object per series."""
        key, total = self.key, self.total
        return "".join([
            f"{series}{text} {figures[key]}\n" if type(figures) is dict
            else f"{series}{text} {number_text(getattr(figures, total))}\n"
            for text, figures in rows if type(figures) is not dict or key in figures])


def entry_rows(per: PerEntry, messages: Sequence[Any], labels: list[str]
               ) -> list[tuple[str, Any]]:
    """(label text, the entry's figures) for every entry of every message, in order; for a
    message without entries, (its label text, the message). Made once a scrape for all the
    families of one map (the eight network ones share each interface's label text); the
    figures of an entry are integers (the wire's int_map)."""
    rows: list[tuple[str, Any]] = []
    for text, message in zip(labels, messages, strict=True):
        entries = getattr(message, per.field)
        if entries is None:
            rows.append((text, message))
            continue
        head = f'{text[:-1]},{per.label}="'
        rows.extend((f'{head}{_label_value(name)}"}}', figures)
                    for name, figures in sorted(entries.items()))
    return rows


@dataclass(frozen=True, slots=True)
class OneOf:
    """A series per possible value, 1 for the current one and 0 for the others (no series at
    all while the attribute is null)."""

    attribute: str
    label: str
    choices: tuple[str, ...]

    def __call__(self, message: Any) -> PerSeries:
        current = getattr(message, self.attribute)
        if current is None:
            return []
        return [((self.label, choice), int(choice == current)) for choice in self.choices]

    def lines(self, series: str, messages: Sequence[Any], labels: list[str]) -> str:
        """What ``__call__`` gives, written without an object per series."""
        parts = [(f'{series}{text[:-1]},{self.label}="', current)
                 for text, current in zip(labels, map(attrgetter(self.attribute), messages),
                                          strict=True)
                 if current is not None]
        choices = [(choice, _label_value(choice) + '"} ') for choice in self.choices]
        return "".join([f"{head}{tail}{int(choice == current)}\n"
                        for head, current in parts for choice, tail in choices])


_NET = (("receive", "rx"), ("transmit", "tx"))
_NET_FIGURES = (("bytes", "bytes", "Cumulative count of bytes {}"),
                ("packets", "packets", "Cumulative count of packets {}"),
                ("errors", "errors", "Cumulative count of errors encountered while {}"),
                ("packets_dropped", "dropped", "Cumulative count of packets dropped while {}"))
_NET_VERBS = {"receive": ("received", "receiving"), "transmit": ("transmitted", "transmitting")}
FAMILIES: tuple[Family, ...] = (
    Family("container_cpu_usage_seconds", "counter", "Cumulative cpu time consumed in seconds.",
           "cpu_usage_ns", 1e9, 'cpu="total"'),
    Family("container_cpu_user_seconds", "counter",
           "Cumulative user cpu time consumed in seconds.", "cpu_user_ns", 1e9),
    Family("container_cpu_system_seconds", "counter",
           "Cumulative system cpu time consumed in seconds.", "cpu_system_ns", 1e9),
    Family("container_cpu_cfs_periods", "counter",
           "Number of elapsed enforcement period intervals.", _quota_only("cpu_periods")),
    Family("container_cpu_cfs_throttled_periods", "counter",
           "Number of throttled period intervals.", _quota_only("cpu_throttled_periods")),
    Family("container_cpu_cfs_throttled_seconds", "counter",
           "Total time duration the container has been throttled.",
           _quota_only("cpu_throttled_ns", 1e9)),
    Family("container_memory_usage_bytes", "gauge",
           "Current memory usage in bytes, including all memory regardless of when it was "
           "accessed",
           # A 1.0 collector sends only the working set.
           lambda s: s.mem_usage if s.mem_cgroup_usage is None else s.mem_cgroup_usage),
    Family("container_memory_working_set_bytes", "gauge", "Current working set in bytes.",
           "mem_usage"),
    Family("container_memory_max_usage_bytes", "gauge",
           "Maximum memory usage recorded in bytes", "mem_max_usage"),
    Family("container_memory_rss", "gauge", "Size of RSS in bytes.", "mem_rss"),
    Family("container_memory_cache", "gauge", "Number of bytes of page cache memory.",
           "mem_cache"),
    Family("container_memory_mapped_file", "gauge", "Size of memory mapped files in bytes.",
           "mem_mapped_file"),
    Family("container_memory_swap", "gauge", "Container swap usage in bytes.", "mem_swap"),
    Family("container_memory_failcnt", "untyped", "Number of memory usage hits limits",
           "mem_failcnt"),
    Family("container_oom_events", "counter",
           "Count of out of memory events observed for the container", _oom_kills),
    Family("container_spec_memory_limit_bytes", "gauge",
           "Memory limit (the host's memory when unlimited)", "mem_limit"),
    *(Family(f"container_network_{way}_{name}", "counter",
             text.format(_NET_VERBS[way][0 if name in ("bytes", "packets") else 1]),
             "", per=PerEntry("net_interfaces", "interface", f"{prefix}_{key}",
                              f"{prefix}_{key}"))
      for way, prefix in _NET for name, key, text in _NET_FIGURES),
    Family("container_fs_reads_bytes", "counter", "Cumulative count of bytes read", "",
           per=PerEntry("blk_devices", "device", "read_bytes", "blk_read_bytes")),
    Family("container_fs_writes_bytes", "counter", "Cumulative count of bytes written", "",
           per=PerEntry("blk_devices", "device", "write_bytes", "blk_write_bytes")),
    Family("container_last_seen", "gauge", "When the sample was read, seconds since the epoch",
           "timestamp", 1e9),
    Family("statspout_container_cpu_usage_percent", "gauge",
           "CPU use over the last interval; 100 = one core", "cpu_percent"),
    Family("statspout_container_memory_usage_percent", "gauge",
           "Working set / limit x 100", "mem_percent"),
    # From the containers' state messages.
    Family("container_start_time_seconds", "gauge",
           "Start time of the container since unix epoch in seconds.",
           lambda st: None if st.started_at is None else st.started_at // 10**9,
           source="state"),
    Family("statspout_container_state", "gauge",
           "1 for the container's current state, 0 for the others", "", source="state",
           per=OneOf("status", "state", CONTAINER_STATUSES)),
    Family("statspout_container_health_status", "gauge",
           "1 for the health check's current status, 0 for the others (containers with a "
           "health check)", "", source="state", per=OneOf("health", "status", HEALTH_STATUSES)),
    Family("statspout_container_health_failing_streak", "gauge",
           "Consecutive failed health checks", "health_failing_streak", source="state"),
    # Not "…_restart_count": the "_count" suffix is a histogram's or summary's (promtool's
    # lint refuses it); a gauge, as Docker counts from 0 again after a manual start.
    Family("statspout_container_restarts", "gauge",
           "Restarts by the restart policy since the last manual start", "restart_count",
           source="state"),
    Family("statspout_container_exit_code", "gauge",
           "The last exit code (no series while running or never started)", "exit_code",
           source="state"),
    Family("statspout_container_oom_killed", "gauge", "1 if the last exit was an OOM kill",
           lambda st: int(st.oom_killed), source="state"),
    # From the engines' messages, per host.
    Family("machine_cpu_cores", "gauge", "Number of logical CPU cores.", "cpus",
           source="engine"),
    Family("machine_memory_bytes", "gauge", "Amount of memory installed on the machine.",
           "memory_total", source="engine"),
    Family("statspout_engine_containers", "gauge", "Containers of the engine, by state", "",
           source="engine", per=lambda e: [(("state", "running"), e.containers_running),
                                           (("state", "paused"), e.containers_paused),
                                           (("state", "stopped"), e.containers_stopped)]),
    Family("statspout_engine_images", "gauge", "Images of the engine", "images",
           source="engine"),
)
_INTEGERS = {int}
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_FORMAT = "application/openmetrics-text; version=1.0.0; charset=utf-8"
# Both formats escape a backslash and a newline in help texts, and a double quote too in label
# values; all else is written as it is (UTF-8).
_ESCAPE_HELP = str.maketrans({"\\": "\\\\", "\n": "\\n"})
_ESCAPE_LABEL_VALUE = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})


def _label_value(value: str) -> str:
    return value.translate(_ESCAPE_LABEL_VALUE)


def _expanded(series: str, per: Callable[[Any], PerSeries],
              messages: Sequence[Any], labels: list[str]) -> str:
    """The lines of a family with a series per entry: the message's labels plus the entry's."""
    lines = []
    for text, message in zip(labels, messages, strict=True):
        for extra, value in per(message):
            if value is not None:
                labels_text = text if extra is None else (
                    f'{text[:-1]},{extra[0]}="{_label_value(extra[1])}"}}')
                lines.append(f"{series}{labels_text} {number_text(value)}\n")
    return "".join(lines)


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

    def _label_keys(self, samples: Sequence[ContainerStats | ContainerState]
                    ) -> dict[str, str]:
        """This scrape's container labels: the exact keys, then the glob matches seen."""
        if not self._globbing:
            return self._fixed_keys
        seen = {key for sample in samples for key in self._labels.keys(sample.labels)}
        return self._names_of([*self._exact, *sorted(seen.difference(self._exact))])

    def render(self, openmetrics: bool = False) -> bytes:
        """The exposition of every current sample, state and engine: OpenMetrics 1.0 or the
        text format 0.0.4."""
        samples = self._samples.current()
        states = self._samples.states()
        engines = self._samples.engines()
        container_labels = self._label_sets([*samples, *states])
        sources: dict[str, tuple[Sequence[Any], list[str]]] = {
            "stats": (samples, container_labels[:len(samples)]),
            "state": (states, container_labels[len(samples):]),
            "engine": (engines, [f'{{host="{_label_value(e.host)}"}}' for e in engines]),
        }
        parts = []
        entry_rows_made: dict[str, list[tuple[str, Any]]] = {}
        for family in FAMILIES:
            name, kind = family.name, family.kind
            series = f"{name}_total" if kind == "counter" else name
            header = series if kind == "counter" and not openmetrics else name
            if kind == "untyped" and openmetrics:
                kind = "unknown"
            parts.append(f"# HELP {header} {family.help.translate(_ESCAPE_HELP)}\n"
                         f"# TYPE {header} {kind}\n".encode())
            messages, labels = sources[family.source]
            per = family.per
            if isinstance(per, PerEntry):
                rows = entry_rows_made.get(per.field)
                if rows is None:
                    rows = entry_rows_made[per.field] = entry_rows(per, messages, labels)
                parts.append(per.lines(series, rows).encode())
                continue
            if isinstance(per, OneOf):
                parts.append(per.lines(series, messages, labels).encode())
                continue
            if per is not None:
                parts.append(_expanded(series, per, messages, labels).encode())
                continue
            if family.own_labels:
                labels = [text[:-1] + "," + family.own_labels + "}" for text in labels]
            getter = (attrgetter(family.value) if isinstance(family.value, str)
                      else family.value)
            divisor = family.divisor
            values: list = list(map(getter, messages))
            all_integers = set(map(type, values)) <= _INTEGERS
            if divisor is not None and all_integers:
                # an integer over the divisor is a finite float: number_text writes its repr
                values = list(map(repr, map(truediv, values, repeat(divisor))))
            elif divisor is not None or not all_integers:
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

    def _label_sets(self, samples: Sequence[ContainerStats | ContainerState]) -> list[str]:
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
        Option("stale-intervals", "drop a container's series after this many intervals "
               "without a sample", default=3, type=cli.positive_int),
        *label_key_options("container_label_<key> labels"),
        Option("label-names", "deprecated: an exact --prometheus.label-include",
               repeatable=True),
    )

    def __init__(self, settings: SimpleNamespace, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        super().__init__(settings,
                         LatestSamples(settings.stale_intervals * WIRE_1_0_INTERVAL_S, clock,
                                       stale_intervals=settings.stale_intervals))
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
