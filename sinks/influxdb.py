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
collector's host) and the allow-listed container labels (``--influxdb.label-tags``), and the
string field ``container_id`` (a field, not a tag: ids would make a series per container run).
Integers are always written as signed 64-bit integers. A point is keyed by its series and
timestamp, so a retried write overwrites and never duplicates. Events change nothing: a stopped
container's series simply get no new points, and there is nothing to forget.

Line protocol comes from influxdb-client's ``Point``. API v2 writes with the library's write
API; API v1 (``/write`` of every InfluxDB 1.x) POSTs the library's line protocol itself.
"""

from __future__ import annotations

import gzip
from types import SimpleNamespace
from urllib.parse import urlencode

import urllib3
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.write_api import SYNCHRONOUS

from statspout import cli
from statspout.sinks.base import Option
from statspout.sinks.delivery import DeliveringSink, Failure, delivery_options
from statspout.wire import ContainerStats

_INT64_MAX = 2**63 - 1


class WriteRefused(Exception):
    """The v1 ``/write`` endpoint answered with an error status."""

    def __init__(self, status: int, body: str, retry_after: str | None) -> None:
        super().__init__(f"HTTP {status}: {body.strip()[:300]}")
        self.status = status
        self.retry_after = retry_after


def signed(value: int) -> int:
    """Influx integers are signed 64-bit; the wire allows unsigned ones. Cap rather than let
    one absurd counter get its whole batch rejected."""
    return min(value, _INT64_MAX)


def to_points(sample: ContainerStats, label_tags: tuple[str, ...] = ()) -> list[Point]:
    """The four Telegraf-style points of one sample."""
    tags = {
        "container_name": sample.name,
        "container_image": sample.image,
        "engine_host": sample.host,
        **{key: sample.labels[key] for key in label_tags if key in sample.labels},
    }

    def point(measurement: str, extra_tags: dict[str, str], fields: dict[str, object]) -> Point:
        result = Point(measurement).time(sample.timestamp, WritePrecision.NS)
        for key, value in {**tags, **extra_tags}.items():
            result.tag(key, value)
        for key, value in fields.items():
            result.field(key, signed(value) if type(value) is int else value)
        return result.field("container_id", sample.id)

    return [
        point("docker_container_cpu", {"cpu": "cpu-total"}, {
            "usage_total": sample.cpu_usage_ns,
            "usage_percent": sample.cpu_percent,  # None: the library leaves the field out
            "online_cpus": sample.online_cpus,
            "pids": sample.pids,
        }),
        point("docker_container_mem", {}, {
            "usage": sample.mem_usage,
            "limit": sample.mem_limit,
            "usage_percent": sample.mem_percent,
        }),
        point("docker_container_net", {"network": "total"}, {
            name: getattr(sample, name) for name in (
                "rx_bytes", "tx_bytes", "rx_packets", "tx_packets",
                "rx_errors", "tx_errors", "rx_dropped", "tx_dropped",
            )
        }),
        point("docker_container_blkio", {"device": "total"}, {
            "io_service_bytes_recursive_read": sample.blk_read_bytes,
            "io_service_bytes_recursive_write": sample.blk_write_bytes,
        }),
    ]


def classify(exc: Exception) -> Failure:
    """Retry what the server or the network may get over; give up on other 4xx."""
    status = getattr(exc, "status", None)
    if isinstance(exc, (WriteRefused, InfluxDBError)) and isinstance(status, int):
        retry_after = _seconds(getattr(exc, "retry_after", None))
        if status == 429 or status >= 500:
            return Failure(True, str(exc).splitlines()[0], retry_after)
        reason = f"HTTP {status}: {getattr(exc, 'message', exc)}"
        return Failure(False, reason, key=f"HTTP {status}")
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        return Failure(True, repr(exc))  # refused, reset, timed out
    return Failure(False, repr(exc), key=type(exc).__name__)


def _seconds(retry_after: str | None) -> float | None:
    if retry_after is None:
        return None
    try:
        return float(retry_after)
    except ValueError:  # an HTTP date: rare, and our own backoff is a fine answer
        return None


class InfluxDBSink(DeliveringSink):
    name = "influxdb"
    options = (
        Option("api", "v2: /api/v2/write (InfluxDB 2.x, 3.x, 1.8+); v1: /write (InfluxDB 1.x)",
               default="v2", choices=("v2", "v1")),
        Option("url", "the server's base URL", default="http://127.0.0.1:8086"),
        Option("token", "API token (v2)", default="", secret=True),
        Option("org", "organisation (v2)", default=""),
        Option("bucket", "bucket (v2)", default="statspout"),
        Option("database", "database (v1)", default="statspout"),
        Option("retention-policy", "retention policy (v1); empty: the database's default",
               default=""),
        Option("username", "user (v1)", default=""),
        Option("password", "password (v1)", default="", secret=True),
        Option("label-tags", "container label written as a tag (repeat for more)",
               repeatable=True),
        Option("timeout", "seconds one write request may take", default=10.0,
               type=cli.seconds(0.1)),
        *delivery_options(batch_size=1000),
    )

    def __init__(self, settings: SimpleNamespace) -> None:
        super().__init__(settings, classify)
        self._label_tags = tuple(settings.label_tags or ())
        self._client: InfluxDBClient | None = None
        self._v2 = None  # the library's write API, with api v2
        self._http: urllib3.PoolManager | None = None

    def open(self) -> None:
        s = self.settings
        if s.api == "v2":
            self._client = InfluxDBClient(
                url=s.url, token=s.token, org=s.org, timeout=int(s.timeout * 1000),
                enable_gzip=True,
            )
            self._v2 = self._client.write_api(write_options=SYNCHRONOUS)
        else:
            self._http = urllib3.PoolManager(
                timeout=urllib3.Timeout(total=s.timeout), retries=False
            )
        super().open()

    def close(self) -> None:
        super().close()
        if self._client is not None:
            self._client.close()
        if self._http is not None:
            self._http.clear()

    def line_protocol(self, batch: list[ContainerStats]) -> bytes:
        points = (p for sample in batch for p in to_points(sample, self._label_tags))
        return "\n".join(p.to_line_protocol() for p in points).encode()

    def write_batch(self, batch: list[ContainerStats]) -> None:
        s = self.settings
        body = self.line_protocol(batch)
        if self._client is not None:
            self._v2.write(s.bucket, s.org, record=body, write_precision=WritePrecision.NS)
            return
        fields = {"db": s.database, "precision": "ns"}
        if s.retention_policy:
            fields["rp"] = s.retention_policy
        headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"}
        if s.username or s.password:
            headers.update(urllib3.make_headers(basic_auth=f"{s.username}:{s.password}"))
        url = f"{s.url.rstrip('/')}/write?{urlencode(fields)}"
        response = self._http.request("POST", url, body=gzip.compress(body, 1), headers=headers)
        if response.status != 204:
            raise WriteRefused(
                response.status, response.data.decode(errors="replace"),
                response.headers.get("Retry-After"),
            )

