"""The InfluxDB sink: samples as points shaped like Telegraf's docker input.

Data model (docs/sinks/influxdb.md has the full table), one point per measurement per sample,
all at the sample's timestamp in nanoseconds:

- ``docker_container_cpu`` (tag ``cpu=cpu-total``): ``usage_total`` (int, ns),
  ``usage_percent`` (float, %, 100 = one core; absent on a container's first sample),
  ``online_cpus`` (int), ``pids`` (int).
- ``docker_container_mem``: ``usage``, ``limit`` (int, bytes), ``usage_percent`` (float, %).
- ``docker_container_net`` (tag ``network=total``): ``rx_bytes``, ``tx_bytes`` (int, bytes),
  ``rx_packets``, ``tx_packets``, ``rx_errors``, ``tx_errors``, ``rx_dropped``, ``tx_dropped``.
- ``docker_container_blkio`` (tag ``device=total``): ``io_service_bytes_recursive_read`` and
  ``io_service_bytes_recursive_write`` (int, bytes).

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
lines is built once and cached (PREFIX_CACHE_SIZE). The sink POSTs it to ``/api/v2/write`` (API
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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from urllib.parse import urlencode

import urllib3

from statspout import cli
from statspout.logs import mask_secrets
from statspout.sinks.base import Option, describe_options
from statspout.sinks.delivery import DeliveringSink, Failure, PartialWrite, delivery_options
from statspout.sinks.label_options import label_key_filter, label_key_options, refusing_exact
from statspout.wire import ContainerStats

log = logging.getLogger("statspout.sink.influxdb")

_INT64_MAX = 2**63 - 1
IDENTITY_TAGS = ("container_name", "container_image", "engine_host")
# (measurement, its own tag, {field: wire name}); the order of the points of a sample.
MEASUREMENTS: tuple[tuple[str, tuple[str, str] | None, dict[str, str]], ...] = (
    ("docker_container_cpu", ("cpu", "cpu-total"), {
        "usage_total": "cpu_usage_ns",
        "usage_percent": "cpu_percent",  # None: the library leaves the field out
        "online_cpus": "online_cpus",
        "pids": "pids",
    }),
    ("docker_container_mem", None, {
        "usage": "mem_usage", "limit": "mem_limit", "usage_percent": "mem_percent",
    }),
    ("docker_container_net", ("network", "total"), {
        name: name for name in ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets",
                                "rx_errors", "tx_errors", "rx_dropped", "tx_dropped")
    }),
    ("docker_container_blkio", ("device", "total"), {
        "io_service_bytes_recursive_read": "blk_read_bytes",
        "io_service_bytes_recursive_write": "blk_write_bytes",
    }),
)
# Keys a label may not take as a tag: ours (identity wins), and InfluxDB's own.
RESERVED_KEYS = frozenset({
    *IDENTITY_TAGS, "container_id", "time",
    *(tag[0] for _, tag, _ in MEASUREMENTS if tag),
    *(field for _, _, fields in MEASUREMENTS for field in fields),
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


def point_tags(sample: ContainerStats, label_tags: Sequence[str] = ()) -> dict[str, str]:
    """The tags every point of ``sample`` carries (besides its measurement's own)."""
    return {
        **{key: sample.labels[key] for key in label_tags if key in sample.labels},
        # Identity last: whatever the allow-list, a label never replaces it.
        "container_name": sample.name,
        "container_image": sample.image,
        "engine_host": sample.host,
    }


# Line protocol, written as influxdb-client's Point writes it (tests/sinks/test_influxdb_writes.py
# compares the two byte for byte): a comma, space, CR, LF and tab are escaped in measurements,
# and an equals sign too in keys and tag values; a quote and a backslash in string fields.
_ESCAPE_MEASUREMENT = str.maketrans(
    {",": "\\,", " ": "\\ ", "\n": "\\n", "\t": "\\t", "\r": "\\r"})
_ESCAPE_KEY = str.maketrans(
    {",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\n", "\t": "\\t", "\r": "\\r"})
_ESCAPE_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})


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


# Per measurement: its escaped name, its own tag, and its fields but container_id sorted by key
# (as Point sorts them): their ",key=" texts and a getter of their values from a sample. The
# string field container_id sorts first in every measurement, so it is part of the line prefix.
_LAYOUT = tuple(
    (measurement.translate(_ESCAPE_MEASUREMENT), own_tag,
     tuple("," + field.translate(_ESCAPE_KEY) + "=" for field in sorted(fields)),
     operator.attrgetter(*(fields[field] for field in sorted(fields))))
    for measurement, own_tag, fields in MEASUREMENTS
)
assert all("container_id" < min(fields) for _, _, fields in MEASUREMENTS)
# Containers (id and tag set) whose line prefixes are kept; when full, the cache starts over (a
# cost in time only, counted in the sink's prefix_cache_resets).
PREFIX_CACHE_SIZE = 100_000


class LineBuilder:
    """Line protocol for samples, the per-container part (measurement, tags, id) built once."""

    def __init__(
        self,
        label_tags: Callable[[Mapping[str, str]], Sequence[str]] = lambda _labels: (),
        cache_size: int = PREFIX_CACHE_SIZE,
    ) -> None:
        # The label keys of a container that become tags (the sink's label filter).
        self._label_tags = label_tags
        self._cache_size = cache_size
        self._prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, ...]] = {}
        self.cache_resets = 0

    def lines(self, sample: ContainerStats) -> list[str]:
        """The four Telegraf-style lines of one sample."""
        key = (sample.id, tuple(point_tags(sample, self._label_tags(sample.labels)).items()))
        prefixes = self._prefixes.get(key)
        if prefixes is None:
            if len(self._prefixes) >= self._cache_size:
                self._prefixes.clear()
                self.cache_resets += 1
            prefixes = self._prefixes[key] = line_prefixes(dict(key[1]), sample.id)
        timestamp = f" {sample.timestamp}"
        lines = []
        for prefix, (_, _, keys, values) in zip(prefixes, _LAYOUT, strict=True):
            written = [prefix]
            for key_text, value in zip(keys, values(sample), strict=True):
                kind = type(value)
                if kind is int and value <= _INT64_MAX:  # the common cases inline
                    written.append(f"{key_text}{value}i")
                elif kind is float and value - value == 0:  # finite
                    shortest = repr(value)  # the shortest text that reads back as that double
                    written.append(key_text + (shortest[:-2] if shortest.endswith(".0")
                                               else shortest))
                elif value is not None:
                    text = field_text(value)
                    if text is not None:
                        written.append(key_text + text)
            written.append(timestamp)
            lines.append("".join(written))
        return lines

    def body(self, batch: list[ContainerStats]) -> bytes:
        """The body of a write of ``batch``: its samples' lines, newline-separated, UTF-8."""
        return "\n".join(line for sample in batch for line in self.lines(sample)).encode()


def line_prefixes(tags: dict[str, str], container_id: str) -> tuple[str, ...]:
    """Per measurement, ``measurement,tag=value,… container_id="…"`` (tags sorted by key,
    empty ones left out)."""
    common = [(key, key.translate(_ESCAPE_KEY) + "=" + escape_tag_value(value))
              for key, value in tags.items() if key and value]
    id_field = f" container_id={field_text(container_id)}"
    prefixes = []
    for measurement, own_tag, _, _ in _LAYOUT:
        pairs = common
        if own_tag:
            own_key, own_value = own_tag
            pairs = [pair for pair in common if pair[0] != own_key]
            pairs.append((own_key, own_key.translate(_ESCAPE_KEY) + "="
                          + escape_tag_value(own_value)))
        tag_text = "".join("," + pair for _, pair in sorted(pairs))
        prefixes.append(measurement + tag_text + id_field)
    return tuple(prefixes)


def line_protocol(batch: list[ContainerStats], label_tags: tuple[str, ...] = ()) -> bytes:
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


class InfluxDBSink(DeliveringSink):
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

    def write_batch(self, batch: list[ContainerStats]) -> None:
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
