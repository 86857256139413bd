"""The InfluxDB sink: samples, states and engines as points shaped like Telegraf's docker input.

Data model (docs/sinks/influxdb.md has the full table; Telegraf's names, types and formulas),
all at the message's timestamp in nanoseconds, null figures left out (never a made-up 0):

- a sample: ``docker_container_cpu`` (``cpu=cpu-total``: usage, user/kernel time, throttling),
  ``docker_container_mem`` (Telegraf's page-cache-less ``usage``, ``usage_percent``, ``limit``,
  ``max_usage``, ``fail_count``, the memory.stat entries of Telegraf's list),
  ``docker_container_net`` (per interface and ``network=total``), ``docker_container_blkio``
  (per ``MAJOR:MINOR`` and ``device=total``);
- a state: ``docker_container_status`` (tag ``container_status``) and, with a health check,
  ``docker_container_health``;
- an engine message: ``docker`` (tags ``engine_host``, ``server_version`` only).

Every point has the tags ``container_name``, ``container_image``, ``engine_host`` (the
collector's host) and the container labels whose keys pass ``--influxdb.label-include`` /
``--influxdb.label-exclude`` (globs, docs/labels.md; the deprecated ``--influxdb.label-tags``
is an exact-key include), and the string field ``container_id`` (a field, not a tag: ids would
make a series per container run). A label never rewrites identity: a key that is one of our tags
or fields, ``time``, or starts with ``_`` (InfluxDB 2's own columns) is refused (exit 2) when
named exactly, and skipped when a glob matches it. In tag values,
tab, newline and CR are written as the two characters ``\t`` ``\n`` ``\r`` (line protocol
cannot carry a newline; Telegraf writes them the same way); all else arrives intact.
Integers are always written as signed 64-bit integers. A point is keyed by its series and
timestamp, so a retried write overwrites and never duplicates. Events change nothing: a stopped
container's series simply get no new points, and there is nothing to forget.

Line protocol is built here, without per-point objects, exactly as influxdb-client's ``Point``
writes it (a test compares the two byte for byte); the measurement-and-tags part of a container's
lines is built once and cached (PREFIX_CACHE_SIZE). States and engines share the samples'
delivery buffer. The sink POSTs it to ``/api/v2/write`` (API
v2) or ``/write`` (API v1, every InfluxDB 1.x), gzip-compressed unless the server is on this
machine, a batch as up to IN_FLIGHT requests at once. With ``--influxdb.api auto`` (the
default) the server's ``/ping`` answer (``X-Influxdb-Version``) decides, before the first
write: 1.x → v1, anything else → v2.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import logging
import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from urllib.parse import urlencode

import urllib3

from statspout import cli
from statspout.logs import mask_secrets
from statspout.sinks.base import Option, describe_options
from statspout.sinks.delivery import DeliveringSink, Failure, PartialWrite, delivery_options
from statspout.sinks.label_options import label_key_filter, label_key_options, refusing_exact
from statspout.wire import ContainerState, ContainerStats, EngineInfo

log = logging.getLogger("statspout.sink.influxdb")

# What the sink writes: samples, and containers' states and engines' counts (schema 1.1).
InfluxMessage = ContainerStats | ContainerState | EngineInfo

_INT64_MAX = 2**63 - 1
IDENTITY_TAGS = ("container_name", "container_image", "engine_host")
# The fields of a sample's points: {field: wire name}, null values left out.
CPU_FIELDS = {
    "usage_total": "cpu_usage_ns",
    "usage_in_usermode": "cpu_user_ns",
    "usage_in_kernelmode": "cpu_system_ns",
    "throttling_periods": "cpu_periods",
    "throttling_throttled_periods": "cpu_throttled_periods",
    "throttling_throttled_time": "cpu_throttled_ns",
    "usage_percent": "cpu_percent",
    "online_cpus": "online_cpus",
    "pids": "pids",
}
NET_FIELDS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets",
              "rx_errors", "tx_errors", "rx_dropped", "tx_dropped")
BLKIO_FIELDS = {
    "io_service_bytes_recursive_read": ("blk_read_bytes", "read_bytes"),
    "io_service_bytes_recursive_write": ("blk_write_bytes", "write_bytes"),
}
# The memory.stat entries Telegraf copies into docker_container_mem, under the kernel's names
# (plugins/inputs/docker/gatherers.go, addMemoryMetrics): v1's names; on v2 those of them the
# kernel also writes (active_anon, active_file, inactive_anon, inactive_file, pgfault,
# pgmajfault, unevictable).
MEM_STAT_FIELDS = frozenset((
    "active_anon", "active_file", "cache", "hierarchical_memory_limit", "inactive_anon",
    "inactive_file", "mapped_file", "pgfault", "pgmajfault", "pgpgin", "pgpgout", "rss",
    "rss_huge", "total_active_anon", "total_active_file", "total_cache", "total_inactive_anon",
    "total_inactive_file", "total_mapped_file", "total_pgfault", "total_pgmajfault",
    "total_pgpgin", "total_pgpgout", "total_rss", "total_rss_huge", "total_unevictable",
    "total_writeback", "unevictable", "writeback",
))
MEM_FIELDS = ("usage", "usage_percent", "limit", "max_usage", "fail_count")
STATUS_FIELDS = ("oomkilled", "pid", "exitcode", "started_at", "finished_at", "uptime_ns",
                 "restart_count")
HEALTH_FIELDS = ("health_status", "failing_streak")
ENGINE_FIELDS = ("n_containers", "n_containers_running", "n_containers_paused",
                 "n_containers_stopped", "n_images", "n_cpus", "memory_total")
# Tags of a measurement's own (besides the identity tags and labels).
OWN_TAGS = ("cpu", "network", "device", "container_status")
# Keys a label may not take as a tag: ours (identity wins), and InfluxDB's own.
RESERVED_KEYS = frozenset({
    *IDENTITY_TAGS, "container_id", "time", "server_version", *OWN_TAGS, *CPU_FIELDS, *NET_FIELDS,
    *BLKIO_FIELDS, *MEM_STAT_FIELDS, *MEM_FIELDS, *STATUS_FIELDS, *HEALTH_FIELDS,
    *ENGINE_FIELDS,
})
# Requests of one batch in flight at once (the batch cut in parts of at least MIN_PART_SAMPLES,
# each sent by a pool thread as soon as the writer thread built it):
# while the server stores one part, the next is being built (docs/performance.md).
IN_FLIGHT = 4
MIN_PART_SAMPLES = 100
API_OPTIONS = {
    "v2": ("token", "org", "bucket"),
    "v1": ("database", "retention-policy", "username", "password"),
}


RESERVED_PREFIXES = ("_",)


def reserved_key(key: str) -> bool:
    return key in RESERVED_KEYS or key.startswith(RESERVED_PREFIXES)


# A value of --influxdb.label-include or -tags: a label key that cannot shadow a tag or field.
label_tag_key = refusing_exact(
    reserved_key, "tag: it is a tag or field of ours, InfluxDB's 'time', or starts with '_' "
                  "(reserved by InfluxDB 2)")


class WriteRefused(Exception):
    """The server answered a request with an error status."""

    def __init__(self, status: int, text: str, retry_after: str | None) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status
        self.retry_after = retry_after


def signed(value: int) -> int:
    """Influx integers are signed 64-bit; the wire allows unsigned ones. Cap rather than let
    one absurd counter get its point rejected."""
    return min(value, _INT64_MAX)


def point_tags(message: InfluxMessage, label_tags: Sequence[str] = ()) -> dict[str, str]:
    """The tags every point of ``message`` carries (besides its measurement's own)."""
    if isinstance(message, EngineInfo):
        return {"engine_host": message.host, "server_version": message.server_version}
    return {
        **{key: message.labels[key] for key in label_tags if key in message.labels},
        # Identity last: whatever the allow-list, a label never replaces it.
        "container_name": message.name,
        "container_image": message.image,
        "engine_host": message.host,
    }


# One point of the data model: measurement, its own tags, its fields (None: left out).
PointData = tuple[str, tuple[tuple[str, str], ...], Mapping[str, object]]


def telegraf_mem_usage(usage: int, stat: Mapping[str, int]) -> int:
    """Telegraf's ``docker_container_mem`` ``usage`` (plugins/common/docker,
    CalculateMemUsageUnixNoCache): the cgroup's usage less memory.stat ``cache`` (cgroup v1,
    checked first), else ``total_inactive_file``, else ``inactive_file`` (v2); page cache
    excluded, as ``docker stats`` does."""
    for key in ("cache", "total_inactive_file"):
        value = stat.get(key)
        if value is not None and value < usage:
            return usage - value
    value = stat.get("inactive_file", 0)
    return usage - value if value < usage else usage


class FixedFields(Mapping[str, object]):
    """The fields of a point whose names never change (cpu, net total, blkio total), read from
    the sample on demand: the line builder takes them in an order sorted once, with one
    attrgetter, rather than building and sorting a dict per point."""

    __slots__ = ("layout", "sample")

    def __init__(self, layout: FixedLayout, sample: ContainerStats) -> None:
        self.layout = layout
        self.sample = sample

    def __getitem__(self, name: str) -> object:
        return getattr(self.sample, self.layout.attributes[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self.layout.attributes)

    def __len__(self) -> int:
        return len(self.layout.attributes)


class FixedLayout:
    """Fields (sorted by name, as Point writes them, container_id among them) and the sample
    attribute of each."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        self.attributes = dict(sorted({**fields, "container_id": "id"}.items()))
        self.key_texts = tuple("," + name.translate(_ESCAPE_KEY) + "="
                               for name in self.attributes)
        self.values = operator.attrgetter(*self.attributes.values())

    def __call__(self, sample: ContainerStats) -> FixedFields:
        return FixedFields(self, sample)


def sample_points(sample: ContainerStats) -> list[PointData]:
    """The points of one sample, in Telegraf's order: cpu, mem, net per interface and total,
    blkio per device and total."""
    cid = sample.id
    stat = sample.mem_stat or {}
    mem: dict[str, object] = {key: value for key, value in stat.items()
                              if key in MEM_STAT_FIELDS}
    if sample.mem_cgroup_usage is None:  # a 1.0 collector: docker stats' figures, page
        usage, percent = sample.mem_usage, sample.mem_percent  # cache excluded all the same
    else:
        usage = telegraf_mem_usage(sample.mem_cgroup_usage, stat)
        percent = usage / sample.mem_limit * 100 if sample.mem_limit else None
    mem.update(container_id=cid, usage=usage, limit=sample.mem_limit, usage_percent=percent,
               max_usage=sample.mem_max_usage,
               fail_count=sample.mem_failcnt or None)  # Telegraf: only when not 0
    points: list[PointData] = [
        ("docker_container_cpu", (("cpu", "cpu-total"),), _CPU(sample)),
        ("docker_container_mem", (), mem),
    ]
    interfaces = sample.net_interfaces
    # No interface (--network none, host network): Telegraf writes no network point at all; a
    # 1.0 collector's sample (no per-interface figures) has its totals written.
    if interfaces is None or interfaces:
        for name, counts in sorted((interfaces or {}).items()):
            figures: dict[str, object] = {key: value for key, value in counts.items()
                                          if key in NET_FIELDS}
            figures["container_id"] = cid
            points.append(("docker_container_net", (("network", name),), figures))
        points.append(("docker_container_net", (("network", "total"),), _NET_TOTAL(sample)))
    devices = sample.blk_devices or {}
    for device in sorted(devices):
        io = devices[device]
        figures = {field: io.get(key) for field, (_, key) in BLKIO_FIELDS.items()}
        figures["container_id"] = cid
        points.append(("docker_container_blkio", (("device", device),), figures))
    points.append(("docker_container_blkio", (("device", "total"),), _BLKIO_TOTAL(sample)))
    return points


def state_points(state: ContainerState) -> list[PointData]:
    """``docker_container_status`` and, with a health check, ``docker_container_health``, as
    Telegraf writes them from ``docker inspect`` (times in ns since the epoch)."""
    started, finished = state.started_at, state.finished_at
    uptime = None
    if started is not None:
        # Telegraf: until the exit, or until now when running (the exit is then older).
        end = finished if finished is not None and finished >= started else state.timestamp
        uptime = end - started
    status_tag = (("container_status", state.status),)
    points: list[PointData] = [("docker_container_status", status_tag, {
        "oomkilled": state.oom_killed, "pid": state.pid, "exitcode": state.exit_code,
        "started_at": started, "finished_at": finished, "uptime_ns": uptime,
        "restart_count": state.restart_count, "container_id": state.id,
    })]
    if state.health is not None:
        points.append(("docker_container_health", status_tag, {
            "health_status": state.health, "failing_streak": state.health_failing_streak}))
    return points


def engine_points(engine: EngineInfo) -> list[PointData]:
    """Telegraf's ``docker`` measurement (gatherInfo), one point per engine message."""
    return [("docker", (), {
        "n_containers": engine.containers_running + engine.containers_paused
        + engine.containers_stopped,
        "n_containers_running": engine.containers_running,
        "n_containers_paused": engine.containers_paused,
        "n_containers_stopped": engine.containers_stopped,
        "n_images": engine.images, "n_cpus": engine.cpus, "memory_total": engine.memory_total,
    })]


def message_points(message: InfluxMessage) -> list[PointData]:
    """The data model: the points of one message."""
    if isinstance(message, ContainerStats):
        return sample_points(message)
    if isinstance(message, ContainerState):
        return state_points(message)
    return engine_points(message)


# Line protocol, written as influxdb-client's Point writes it (tests/sinks/test_influxdb_writes.py
# compares the two byte for byte): a comma, space, CR, LF and tab are escaped in measurements,
# and an equals sign too in keys and tag values; a quote and a backslash in string fields.
_ESCAPE_MEASUREMENT = str.maketrans(
    {",": "\\,", " ": "\\ ", "\n": "\\n", "\t": "\\t", "\r": "\\r"})
_ESCAPE_KEY = str.maketrans(
    {",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\n", "\t": "\\t", "\r": "\\r"})
_ESCAPE_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})
# The points whose field names never change, laid out once.
_CPU = FixedLayout(CPU_FIELDS)
_NET_TOTAL = FixedLayout({name: name for name in NET_FIELDS})
_BLKIO_TOTAL = FixedLayout({field: name for field, (name, _) in BLKIO_FIELDS.items()})


def escape_tag_value(value: str) -> str:
    """A tag value; a trailing backslash gets a space, lest it escape the separator."""
    text = value.translate(_ESCAPE_KEY)
    return text + " " if text.endswith("\\") else text


def field_text(value: object) -> str | None:
    """A field value in line protocol; None for what is left out (None, NaN, infinities)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{signed(value)}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        text = repr(value)  # the shortest text that reads back as the same double
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, str):
        return '"' + value.translate(_ESCAPE_STRING) + '"'
    raise TypeError(f"a field of type {type(value).__name__} cannot be written: {value!r}")


# Containers (id and tag set) whose line prefixes are kept; when full, the cache starts over (a
# cost in time only, counted in the sink's prefix_cache_resets).
PREFIX_CACHE_SIZE = 100_000


class LineBuilder:
    """Line protocol for messages, the measurement-and-tags part of a container's lines built
    once and cached."""

    def __init__(
        self,
        label_tags: Callable[[Mapping[str, str]], Sequence[str]] = lambda _labels: (),
        cache_size: int = PREFIX_CACHE_SIZE,
    ) -> None:
        # The label keys of a container that become tags (the sink's label filter).
        self._label_tags = label_tags
        self._cache_size = cache_size
        # (id, tag set) → {(measurement, own tags): prefix}
        self._prefixes: dict[tuple[str, tuple[tuple[str, str], ...]],
                             dict[tuple[str, tuple[tuple[str, str], ...]], str]] = {}
        # field name → ",name=" (field names come from a fixed set: bounded)
        self._keys: dict[str, str] = {}
        self.cache_resets = 0

    def lines(self, message: InfluxMessage) -> list[str]:
        """The Telegraf-style lines of one message."""
        labels = {} if isinstance(message, EngineInfo) else message.labels
        cid = "" if isinstance(message, EngineInfo) else message.id
        key = (cid, tuple(point_tags(message, self._label_tags(labels)).items()))
        prefixes = self._prefixes.get(key)
        if prefixes is None:
            if len(self._prefixes) >= self._cache_size:
                self._prefixes.clear()
                self.cache_resets += 1
            prefixes = self._prefixes[key] = {}
        timestamp = f" {message.timestamp}"
        id_text = prefixes.get(("container_id", ()))
        if id_text is None:
            id_text = prefixes[("container_id", ())] = field_text(cid) or ""
        lines = []
        keys = self._keys
        for measurement, own_tags, fields in message_points(message):
            prefix = prefixes.get((measurement, own_tags))
            if prefix is None:
                prefix = prefixes[(measurement, own_tags)] = line_prefix(
                    measurement, {**dict(key[1]), **dict(own_tags)})
            written = [prefix]
            if type(fields) is FixedFields:
                layout = fields.layout
                pairs: Iterable[tuple[str, object]] = zip(
                    layout.key_texts, layout.values(fields.sample), strict=True)
            else:  # Point writes them sorted by key
                pairs = [(keys.get(name) or self._key_text(name), fields[name])
                         for name in sorted(fields)]
            for key_text, value in pairs:
                kind = type(value)
                if kind is int and value <= _INT64_MAX:  # type: ignore[operator]
                    written.append(f"{key_text}{value}i")  # the common cases inline
                elif kind is float and value - value == 0:  # type: ignore[operator] # finite
                    shortest = repr(value)  # the shortest text that reads back as that double
                    written.append(key_text + (shortest[:-2] if shortest.endswith(".0")
                                               else shortest))
                elif value is cid:  # the container id, escaped once per container
                    written.append(key_text + id_text)
                elif value is not None:
                    text = field_text(value)
                    if text is not None:
                        written.append(key_text + text)
            written[1] = " " + written[1][1:]  # the first field follows a space, not a comma
            written.append(timestamp)
            lines.append("".join(written))
        return lines

    def _key_text(self, name: str) -> str:
        """``,name=`` for a field name, kept (field names come from a fixed set: bounded)."""
        text = self._keys[name] = "," + name.translate(_ESCAPE_KEY) + "="
        return text

    def body(self, batch: Sequence[InfluxMessage]) -> bytes:
        """The body of a write of ``batch``: its messages' lines, newline-separated, UTF-8."""
        return "\n".join(line for message in batch for line in self.lines(message)).encode()


def line_prefix(measurement: str, tags: dict[str, str]) -> str:
    """``measurement,tag=value,…`` (tags sorted by key, empty ones left out)."""
    return measurement.translate(_ESCAPE_MEASUREMENT) + "".join(
        "," + key.translate(_ESCAPE_KEY) + "=" + escape_tag_value(value)
        for key, value in sorted(tags.items()) if key and value)


def line_protocol(batch: Sequence[InfluxMessage], label_tags: tuple[str, ...] = ()) -> bytes:
    """The body of a write of ``batch`` (one-off; the sink keeps a LineBuilder)."""
    return LineBuilder(lambda _labels: label_tags).body(batch)


def compresses(host: str | None) -> bool:
    """Whether writes to ``host`` are gzip-compressed: yes, unless it is this machine, where
    compressing costs both ends more CPU than the bytes it saves (docs/performance.md)."""
    if host is None or host.lower() == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name
        return True


def error_text(body: bytes) -> str:
    """The server's own words: ``{"error": …}`` (1.x), ``{"message": …}`` (2.x), or the body."""
    text = body.decode(errors="replace").strip()
    try:
        decoded = json.loads(text)
    except ValueError:
        return text
    if isinstance(decoded, dict):
        text = str(decoded.get("error") or decoded.get("message") or text)
    return text


def rejected_points(text: str) -> int:
    """Points a partial write refused: ``dropped=N``, or one per line InfluxDB 1.x could not
    parse (it says ``dropped=0`` for those)."""
    dropped = re.search(r" dropped=(\d+)$", text)  # at the end: a quoted line has rx_dropped=
    return (int(dropped.group(1)) if dropped else 0) or text.count("unable to parse '")


def classify(exc: Exception) -> Failure:
    """Retry what the server or the network may get over; give up on other 4xx. Only a body
    too large (413) is worth splitting: InfluxDB refuses single bad points by a partial write."""
    if isinstance(exc, WriteRefused):
        if exc.status == 429 or exc.status >= 500:
            return Failure(True, str(exc), _seconds(exc.retry_after))
        return Failure(False, str(exc), split=exc.status == 413)
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        return Failure(True, repr(exc))  # refused, reset, timed out
    return Failure(False, repr(exc))


def _seconds(retry_after: str | None) -> float | None:
    if retry_after is None:
        return None
    try:
        return float(retry_after)
    except ValueError:  # an HTTP date: rare, and our own backoff is a fine answer
        return None


def api_of_version(version: str | None) -> str:
    """The write API for a server's ``X-Influxdb-Version``: 1.x → v1, any other → v2."""
    return "v1" if version and re.match(r"v?1\.", version) else "v2"


class InfluxDBSink(DeliveringSink[InfluxMessage]):
    name = "influxdb"
    options = (
        Option("api", "auto: ask the server (/ping) and use v1 for InfluxDB 1.x, else v2; "
               "v2: /api/v2/write (InfluxDB 2.x, 3.x, 1.8+); v1: /write (InfluxDB 1.x)",
               default="auto", choices=("auto", "v2", "v1")),
        Option("url", "the server's base URL", default="http://127.0.0.1:8086"),
        Option("token", "API token (v2)", default="", secret=True),
        Option("org", "organisation (v2)", default=""),
        Option("bucket", "bucket (v2)", default="statspout"),
        Option("database", "database (v1)", default="statspout"),
        Option("retention-policy", "retention policy (v1); empty: the database's default",
               default=""),
        Option("username", "user (v1)", default=""),
        Option("password", "password (v1)", default="", secret=True),
        *label_key_options("tags", label_tag_key),
        Option("label-tags", "deprecated: an exact --influxdb.label-include",
               repeatable=True, type=label_tag_key),
        Option("timeout", "seconds one write request may take", default=10.0,
               type=cli.seconds(0.1)),
        *delivery_options(batch_size=1000),
    )

    @classmethod
    def logged_options(cls, settings: SimpleNamespace) -> Sequence[Option]:
        """Only the options of the API in use (with auto: logged once the server answered)."""
        unused = {name for api, names in API_OPTIONS.items() if api != settings.api
                  for name in names}
        return [option for option in cls.options if option.name not in unused]

    def __init__(self, settings: SimpleNamespace) -> None:
        super().__init__(settings, classify)
        label_tags = label_key_filter(settings, log, self.name, "label-tags",
                                      settings.label_tags or (), refuse=RESERVED_KEYS,
                                      refuse_prefixes=RESERVED_PREFIXES)
        self._lines = LineBuilder(label_tags.keys)
        self._api: str | None = None if settings.api == "auto" else settings.api
        url = urllib3.util.parse_url(settings.url)
        self._base_url = url._replace(auth=None).url.rstrip("/")
        self._url_auth = url.auth  # user:password in the URL: basic authentication
        self._gzip = compresses(url.host)
        self._http: urllib3.PoolManager | None = None
        self._requests: ThreadPoolExecutor | None = None

    def open(self) -> None:
        self._http = urllib3.PoolManager(
            num_pools=1, maxsize=IN_FLIGHT,
            timeout=urllib3.Timeout(total=self.settings.timeout), retries=False
        )
        self._requests = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="influxdb-write")
        super().open()

    def close(self) -> None:
        super().close()
        if self._requests is not None:
            self._requests.shutdown()
        if self._http is not None:
            self._http.clear()

    def counters(self) -> Mapping[str, int]:
        return {**super().counters(), "prefix_cache_resets": self._lines.cache_resets}

    def handle_state(self, state: ContainerState) -> None:
        self.deliver(state)

    def handle_engine(self, engine: EngineInfo) -> None:
        self.deliver(engine)

    def write_batch(self, batch: list[InfluxMessage]) -> None:
        """Write the batch as up to IN_FLIGHT requests at once; return when all are confirmed.

        Each part is sent as soon as it is built, so the server stores one while the next is
        being built. A retry writes the whole batch again (points are keyed by series and time:
        rewriting one that landed changes nothing). Refused points of the parts add up to one
        partial write; any other failure of a part is the batch's."""
        api = self._api or self._detect_api()
        parts = max(1, min(IN_FLIGHT, len(batch) // MIN_PART_SAMPLES))
        size = -(-len(batch) // parts)
        assert self._requests is not None, "write before open"
        futures = []
        try:
            for start in range(0, len(batch), size):
                body = self._lines.body(batch[start:start + size])
                futures.append(self._requests.submit(self._post, api, body))
        finally:  # never leave a request of this batch running past its verdict
            outcomes = [future.exception() for future in futures]
        failures = [outcome for outcome in outcomes if outcome is not None]
        other = [failure for failure in failures if not isinstance(failure, PartialWrite)]
        if other:
            raise other[0]
        if failures:
            partials = [failure for failure in failures if isinstance(failure, PartialWrite)]
            raise PartialWrite(partials[0].reason, rejected_points=sum(
                partial.rejected_points for partial in partials))

    def _post(self, api: str, body: bytes) -> None:
        """POST one part; raise unless the server stored all of it."""
        response = self._request("POST", *self._write_target(api), api=api,
                                 body=gzip.compress(body, 1) if self._gzip else body)
        if response.status in (200, 204):
            return
        text = error_text(response.data)
        points = rejected_points(text) if "partial write" in text else 0
        if response.status in (400, 422) and points:
            raise PartialWrite(f"HTTP {response.status}: {text[:500]}", rejected_points=points)
        raise WriteRefused(response.status,
                           text[:500] + self._hint(api, response.status, text),
                           response.headers.get("Retry-After"))

    def _write_target(self, api: str) -> tuple[str, dict[str, str]]:
        """The write path and its query parameters for ``api``."""
        s = self.settings
        if api == "v2":
            return "/api/v2/write", {"org": s.org, "bucket": s.bucket, "precision": "ns"}
        fields = {"db": s.database, "precision": "ns"}
        if s.retention_policy:
            fields["rp"] = s.retention_policy
        return "/write", fields

    def _request(self, method: str, path: str, query: dict[str, str] | None = None, *,
                 api: str | None = None, body: bytes | None = None
                 ) -> urllib3.BaseHTTPResponse:
        s = self.settings
        headers = {}
        if body is not None:
            headers = {"Content-Type": "text/plain; charset=utf-8"}
            if self._gzip:
                headers["Content-Encoding"] = "gzip"
        if api == "v2" and s.token:
            headers["Authorization"] = f"Token {s.token}"
        elif api == "v1" and (s.username or s.password or self._url_auth):
            auth = f"{s.username}:{s.password}" if s.username or s.password else self._url_auth
            headers.update(urllib3.make_headers(basic_auth=auth))
        url = self._base_url + path + (f"?{urlencode(query)}" if query else "")
        assert self._http is not None, "write before open"
        return self._http.request(method, url, body=body, headers=headers)

    def _detect_api(self) -> str:
        """Ask ``/ping`` which server this is; raises (and is retried) while it is down."""
        response = self._request("GET", "/ping")
        version = response.headers.get("X-Influxdb-Version")
        api = api_of_version(version)
        if version is None:
            log.warning("influxdb: %s/ping (HTTP %d) did not say its version; writing with API "
                        "v2. Set --influxdb.api v1 for InfluxDB 1.x",
                        mask_secrets(self._base_url), response.status)
        own = describe_options(
            [option for option in self.options if option.name in API_OPTIONS[api]],
            self.settings)
        log.info("influxdb: %s is InfluxDB %s: writing with API %s (%s)",
                 mask_secrets(self._base_url), version or "(version unknown)", api, own)
        self._api = api
        return api

    def _hint(self, api: str, status: int, text: str) -> str:
        """What to do about a refusal that an operator can fix."""
        s = self.settings
        if status == 404 and "database not found" in text:
            return (f" (create it: influx -execute 'CREATE DATABASE \"{s.database}\"', or set "
                    "--influxdb.database)")
        if status == 404 and api == "v2" and "page not found" in text:
            return (" (this server has no API v2: InfluxDB 1.x before 1.8? Use --influxdb.api "
                    "v1 or auto)")
        if status == 404 and "bucket" in text:
            return " (create the bucket, or check --influxdb.bucket and --influxdb.org)"
        if status in (401, 403):
            return (" (check --influxdb.token for API v2, --influxdb.username and "
                    "--influxdb.password for v1)")
        return ""
