"""Per-container stats streams: ``GET /containers/{id}/stats?stream=true``, one reader thread
each, keeping only the newest payload of every followed container.

The daemon pushes one JSON object per container per tick of its own (Docker: every second plus
the time it takes to sample all streamed containers; Podman 4.3's compatible API: every 5 s).
A reader thread decodes each line and keeps it as the container's newest payload; a payload
replaced before anyone took it is counted as superseded. ``ContainerStream.take_newer`` hands
each payload out once, and only one with a daemon ``read`` time later than any reading handed out
before (by the stream or a one-shot read beside it): the caller waits (bounded) for one, so that
a sample is never the same reading twice.

A stream ends when the container stops (Podman ends it; Docker keeps sending zero payloads,
which end it here), on ``close()`` (the loop forgot the container), or after a connection error
that cannot be retried (the container is gone). A connection error (the daemon restarted) is
retried with backoff, as long as the container is followed. ``ApiStreams`` holds at most
``max_streams`` of them.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import docker
import docker.errors
import requests

from statspout.backoff import Backoff
from statspout.collector.figures import parse_docker_time
from statspout.logs import ThrottledErrors

log = logging.getLogger("statspout.collector")

# A line longer than this is not a stats object (they are 1–4 KiB): counted as malformed, and
# the stream is opened again rather than buffering without end.
MAX_PAYLOAD_BYTES = 1 << 20
# Read size from the socket: a whole payload in one read.
READ_CHUNK_BYTES = 16 << 10
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 30.0
# The daemon's answer for a container that is not running: a zero "read" time.
NOT_RUNNING_READ = "0001-01-01"


@dataclass
class StreamCounts:
    """What the streams did since the collector started; logged in the api report line."""

    # Streams opened for a container (on its first read, or again after its stream ended);
    # reconnections after an error are counted apart.
    started: int = 0
    ended: int = 0  # streams over: the container stopped or is gone, or the loop forgot it
    reconnects: int = 0  # a stream opened again after a connection error (daemon restart)
    payloads: int = 0  # objects decoded from all streams
    # Decoded but never taken by a read: replaced by a newer one, or left when the stream
    # ended. Expected while the interval is longer than the daemon's tick.
    superseded: int = 0
    malformed: int = 0  # a line that is not a JSON object, or longer than MAX_PAYLOAD_BYTES


def split_lines(chunks: Iterable[bytes], max_bytes: int = MAX_PAYLOAD_BYTES) -> Iterator[bytes]:
    """The newline-separated lines of a byte stream, each without its newline; empty lines
    skipped. A line longer than ``max_bytes`` raises ValueError (nothing past it is read)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if len(line) > max_bytes:
                raise ValueError(f"a stats line of {len(line)} bytes")
            if line.strip():
                yield line
        if len(pending) > max_bytes:
            raise ValueError(f"a stats line of more than {max_bytes} bytes")
    if pending.strip():
        yield pending


def decode_payload(line: bytes) -> dict[str, Any] | None:
    """One stats object; None when the line is not a JSON object."""
    try:
        payload = json.loads(line)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def is_not_running(payload: dict[str, Any]) -> bool:
    """Docker streams zero payloads (``read`` of year 1) once the container has stopped."""
    return str(payload.get("read") or "").startswith(NOT_RUNNING_READ)


class ContainerStream:
    """One container's stats stream on a thread of its own; ``take_newer`` gives its newest
    payload once."""

    def __init__(
        self, api: docker.APIClient, container_id: str, counts: StreamCounts,
        lock: threading.Lock, errors: ThrottledErrors,
    ) -> None:
        self.container_id = container_id
        self._api = api
        self._counts = counts
        self._counts_lock = lock  # shared by every stream: counts are added from all threads
        self._errors = errors
        self._changed = threading.Condition()
        self._payload: dict[str, Any] | None = None
        self._received = 0.0  # monotonic time the newest payload arrived
        self._taken = True  # the newest payload was handed out (or there is none)
        # The daemon's "read" time (ns) of the newest reading handed out, by this stream or by
        # a one-shot read beside it: a payload not newer is not handed out. (Docker 20.10
        # answers a one-shot read with the same tick's reading its streams get.)
        self._read_through = 0
        self._payload_read = 0
        self._stop = threading.Event()
        self._response: requests.Response | None = None
        self.ended = threading.Event()  # the thread is done (or about to be)
        # The last connection failed and none is open yet: reads do not wait for a payload.
        self._failing = False
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"stats-{container_id[:12]}")

    def start(self) -> None:
        self.thread.start()

    def take_newer(self, timeout: float, max_age: float) -> dict[str, Any] | None:
        """The newest payload if it was not handed out before and arrived at most ``max_age``
        seconds ago, waiting up to ``timeout`` seconds for one; None when none came (the
        daemon is slow) or none will come soon (the stream ended, or is reconnecting)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                now = time.monotonic()
                if (not self._taken and now - self._received <= max_age
                        and self._payload_read > self._read_through):
                    self._taken = True
                    self._read_through = self._payload_read
                    return self._payload
                if self.ended.is_set() or self._failing or now >= deadline:
                    return None
                self._changed.wait(deadline - now)

    def read_elsewhere(self, read_ns: int) -> None:
        """A reading of this container up to the daemon time ``read_ns`` was taken another way
        (one-shot): no payload of the stream up to that time is handed out."""
        with self._changed:
            self._read_through = max(self._read_through, read_ns)

    def close(self) -> None:
        """Stop following: the thread ends at once (its socket is shut down under it)."""
        self._stop.set()
        response = self._response
        if response is not None:
            _shut_down(response)
        with self._changed:
            self._changed.notify_all()

    def _run(self) -> None:
        waits = Backoff(RECONNECT_FIRST_S, RECONNECT_MAX_S)
        try:
            while not self._stop.is_set():
                try:
                    if self._follow(waits):
                        return  # ended by the daemon, or the container is not running
                except (docker.errors.NotFound, docker.errors.NullResource):
                    return  # the container is gone
                except docker.errors.APIError as exc:
                    if exc.status_code in (404, 409):  # gone, or "is not running"
                        return
                    self._retry(waits, exc)
                except (docker.errors.DockerException, requests.RequestException, OSError,
                        ValueError) as exc:
                    self._retry(waits, exc)
        finally:
            with self._changed:
                unused = 0 if self._taken else 1
                self._taken = True
                self.ended.set()
                self._changed.notify_all()
            self._add(ended=1, superseded=unused)

    def _retry(self, waits: Backoff, exc: Exception) -> None:
        with self._changed:
            self._failing = True
            self._changed.notify_all()
        if self._stop.is_set():
            return
        delay = waits.next_delay()
        self._errors.warning("stats stream of %s lost (%s); opening it again in %.1f s",
                             self.container_id[:12], exc, delay)
        self._stop.wait(delay)
        if not self._stop.is_set():
            self._add(reconnects=1)

    def _follow(self, waits: Backoff) -> bool:
        """Read one connection's payloads until it ends; True when the stream is over for good
        (the daemon ended it, or the container is not running)."""
        url = (f"{self._api.base_url}/v{self._api.api_version}/containers/"
               f"{quote(self.container_id, safe='')}/stats")
        response = self._api.get(url, params={"stream": "1"}, stream=True)
        self._response = response
        try:
            if self._stop.is_set():  # closed while connecting: close() missed the socket
                return True
            try:
                response.raise_for_status()
            except requests.HTTPError as exc:  # raised as the docker package raises it
                docker.errors.create_api_error_from_http_exception(exc)
            with self._changed:
                self._failing = False  # connected again: reads wait for its pushes
            chunks = response.iter_content(READ_CHUNK_BYTES)
            try:
                for line in split_lines(chunks):
                    if self._stop.is_set():
                        return True
                    payload = decode_payload(line)
                    if payload is None:
                        self._add(malformed=1)
                        continue
                    if is_not_running(payload):
                        return True
                    try:
                        read_ns = parse_docker_time(str(payload.get("read")))
                    except ValueError:
                        self._add(malformed=1)
                        continue
                    waits.reset()
                    self._keep(payload, read_ns)
            except ValueError:  # a line past MAX_PAYLOAD_BYTES: open the stream again
                self._add(malformed=1)
                raise
            return True  # the daemon ended the stream: the container stopped
        finally:
            self._response = None
            response.close()

    def _keep(self, payload: dict[str, Any], read_ns: int) -> None:
        with self._changed:
            superseded = 0 if self._taken else 1
            self._payload, self._received, self._taken = payload, time.monotonic(), False
            self._payload_read = read_ns
            self._changed.notify_all()
        self._add(payloads=1, superseded=superseded)

    def _add(self, **figures: int) -> None:
        with self._counts_lock:
            for name, value in figures.items():
                setattr(self._counts, name, getattr(self._counts, name) + value)


def _shut_down(response: requests.Response) -> None:
    """Shut the response's socket down, so that a thread blocked reading it wakes now (closing
    the response itself would wait for that thread's read to return)."""
    connection = getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


class ApiStreams:
    """The followed containers' streams, at most ``max_streams`` of them."""

    def __init__(self, api: docker.APIClient, max_streams: int) -> None:
        self._api = api
        self.max_streams = max_streams
        self._streams: dict[str, ContainerStream] = {}
        self._lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._errors = ThrottledErrors(log, every_s=10.0)
        self.counts = StreamCounts()

    def follow(self, container_id: str) -> ContainerStream | None:
        """The container's stream, started if it is not followed (or its stream ended); None
        when ``max_streams`` are followed already."""
        with self._lock:
            stream = self._streams.get(container_id)
            if stream is not None and not stream.ended.is_set():
                return stream
            if stream is None and len(self._streams) >= self.max_streams:
                return None
            stream = ContainerStream(self._api, container_id, self.counts, self._counts_lock,
                                     self._errors)
            self._streams[container_id] = stream
        with self._counts_lock:
            self.counts.started += 1
        stream.start()
        return stream

    def forget(self, container_id: str) -> None:
        with self._lock:
            stream = self._streams.pop(container_id, None)
        if stream is not None:
            stream.close()

    def followed(self) -> int:
        with self._lock:
            return sum(1 for stream in self._streams.values() if not stream.ended.is_set())

    def close(self) -> None:
        with self._lock:
            streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            stream.close()
        for stream in streams:
            stream.thread.join(5.0)
