"""The REST sink's live fleet page: its static assets and the ``/events`` stream that feeds it.

The page (``sinks/web/``, shipped as package data) is plain HTML, CSS and JavaScript with no
build step and nothing fetched from elsewhere. ``/events`` is a server-sent event stream: about
once a second, one ``data:`` line with every container's latest sample and state in a compact
form (the field names once, then one array per container). A container with a state but no
sample (stopped, exited, restarting) has a row with null figures; one with a sample but no state
yet (a wire 1.0 collector) null state fields. ``status_text`` is the STATUS cell as ``docker ps``
writes it (statspout/docker_format.py), judged at the snapshot's time. The snapshot is encoded
once per tick however many pages watch, and each page gets at most one snapshot in flight: a
slow reader skips ticks instead of queueing them, so a client costs at most one snapshot of
memory.
"""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from typing import Any

from aiohttp import web

from statspout import docker_format as fmt
from statspout.sinks.latest import LatestSamples
from statspout.wire import ContainerState, ContainerStats

TICK_S = 1.0
MAX_EVENT_CLIENTS = 64  # pages watching at once, unless --rest.max-event-clients says otherwise
# Longer than this on one write and the page is dropped: it is not reading.
WRITE_TIMEOUT_S = 30.0

# The fields the page shows, in the order of each row of a snapshot: the identity (of the
# sample, else of the state), the sample's figures, the state's, then the status text.
IDENTITY_FIELDS = ("host", "id", "name", "image", "labels", "timestamp")
SAMPLE_FIELDS = (
    "cpu_percent", "mem_usage", "mem_limit", "mem_percent", "rx_bytes", "tx_bytes",
    "blk_read_bytes", "blk_write_bytes", "pids",
)
STATE_FIELDS = ("status", "health", "restart_count", "exit_code")
SNAPSHOT_FIELDS = (*IDENTITY_FIELDS, *SAMPLE_FIELDS, *STATE_FIELDS, "status_text")


def snapshot_rows(samples: LatestSamples, now_ns: int) -> list[list[Any]]:
    """One row per container with a sample or a state, by host and name."""
    sampled = {(s.host, s.id): s for s in samples.current()}
    stated = {(s.host, s.id): s for s in samples.states()}
    rows = []
    for key in sampled.keys() | stated.keys():
        sample, state = sampled.get(key), stated.get(key)
        known: ContainerStats | ContainerState | None = sample if sample is not None else state
        assert known is not None
        rows.append([getattr(known, f) for f in IDENTITY_FIELDS]
                    + [None if sample is None else getattr(sample, f) for f in SAMPLE_FIELDS]
                    + [None if state is None else getattr(state, f) for f in STATE_FIELDS]
                    + [None if state is None else fmt.status(state, now_ns)])
    return sorted(rows, key=lambda row: (row[0], row[2]))

_ASSETS = {  # path → (file in sinks/web, content type)
    "/": ("index.html", "text/html"),
    "/web/app.js": ("app.js", "text/javascript"),
    "/web/style.css": ("style.css", "text/css"),
}
PAGE_PATHS = frozenset(_ASSETS)

# No inline script, nothing from another origin, the URL (with a token in it) never sent on.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


class PageAssets:
    """The page's files, read from the package once."""

    def __init__(self) -> None:
        folder = resources.files("statspout.sinks") / "web"
        self._files = {path: ((folder / name).read_bytes(), kind)
                       for path, (name, kind) in _ASSETS.items()}

    def response(self, path: str) -> web.Response:
        body, kind = self._files[path]
        return web.Response(body=body, content_type=kind, charset="utf-8",
                            headers=_PAGE_HEADERS)


class SnapshotStream:
    """Serves ``/events``: the latest samples to every page, once per tick."""

    def __init__(self, samples: LatestSamples, max_clients: int) -> None:
        self._samples = samples
        self._max_clients = max_clients
        self.clients = 0
        self.refused_clients = 0
        self._encoded: tuple[int, bytes] = (-1, b"")

    def snapshot(self) -> bytes:
        """This tick's event, encoded once for every page."""
        tick = int(time.monotonic() / TICK_S)
        if self._encoded[0] != tick:
            now_ns = time.time_ns()
            data = json.dumps({"fields": SNAPSHOT_FIELDS,
                               "rows": snapshot_rows(self._samples, now_ns),
                               "server_time_ms": now_ns // 1_000_000},
                              ensure_ascii=False, separators=(",", ":"))
            self._encoded = (tick, b"data: " + data.encode() + b"\n\n")
        return self._encoded[1]

    async def serve(self, request: web.BaseRequest) -> web.StreamResponse:
        if self.clients >= self._max_clients:
            self.refused_clients += 1
            return web.json_response({"error": "too many pages watching; retry"}, status=503,
                                     headers={"Retry-After": "5"})
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})
        self.clients += 1
        try:
            await response.prepare(request)
            await response.write(b"retry: 2000\n\n")
            while True:
                await asyncio.wait_for(response.write(self.snapshot()), WRITE_TIMEOUT_S)
                # Wake just after the start of the next tick, when a fresh snapshot is due (a
                # timer may fire a hair early; the margin keeps it from sending one tick twice).
                await asyncio.sleep(TICK_S - time.monotonic() % TICK_S + 0.01)
        except (ConnectionError, asyncio.TimeoutError):
            pass  # the page went away or stopped reading
        finally:
            self.clients -= 1
        return response
