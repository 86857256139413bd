"""The REST sink's live fleet page: its static assets and the ``/events`` stream that feeds it.

The page (``sinks/web/``, shipped as package data) is plain HTML, CSS and JavaScript with no
build step and nothing fetched from elsewhere. ``/events`` is a server-sent event stream: about
once a second, one ``data:`` line with every container's latest sample in a compact form (the
field names once, then one array per container). The snapshot is encoded once per tick however
many pages watch, and each page gets at most one snapshot in flight: a slow reader skips ticks
instead of queueing them, so a client costs at most one snapshot of memory.
"""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources

from aiohttp import web

from statspout.sinks.latest import LatestSamples

TICK_S = 1.0
MAX_EVENT_CLIENTS = 64  # pages watching at once, unless --rest.max-event-clients says otherwise
# Longer than this on one write and the page is dropped: it is not reading.
WRITE_TIMEOUT_S = 30.0

# The fields the page shows, in the order of each row of a snapshot.
SNAPSHOT_FIELDS = (
    "host", "id", "name", "image", "labels", "timestamp", "cpu_percent", "mem_usage",
    "mem_limit", "mem_percent", "rx_bytes", "tx_bytes", "blk_read_bytes", "blk_write_bytes",
    "pids",
)

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
            rows = [[getattr(sample, field) for field in SNAPSHOT_FIELDS]
                    for sample in self._samples.current()]
            data = json.dumps({"fields": SNAPSHOT_FIELDS, "rows": rows,
                               "server_time_ms": time.time_ns() // 1_000_000},
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
