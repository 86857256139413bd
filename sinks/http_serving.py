"""How a sink serves HTTP (the REST API, Prometheus's ``/metrics``): its address option parsed
once, and an aiohttp server in a thread of its own, with the limits a server facing many clients
needs: a listen backlog, an idle (keep-alive) time-out, a time-out on reading a request's line
and headers (slow clients), limits on the request line, on header size and count, and on
concurrent connections.

aiohttp parses requests and enforces the line, header and keep-alive limits; this module adds
what it lacks: the header-read deadline and the connection cap, in a subclass of its per
connection protocol. The socket is bound in the caller's thread, so that a taken port fails
``start`` at once and names the address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from statspout import cli
from statspout.logs import ThrottledErrors

log = logging.getLogger("statspout.sink.http")
# aiohttp's own lines (a debug line per non-HTTP connection, with what the client sent) would
# carry a client's bytes, a token among them, into the log: it gets a logger that shows none of
# them, and what it reports goes through GuardedRequestHandler.log_exception instead.
_AIOHTTP_LINES = logging.getLogger("statspout.sink.http.aiohttp")
_AIOHTTP_LINES.setLevel(logging.CRITICAL)

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

_REFUSED_BODY = b'{"error": "too many connections; retry"}'
_REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8"
            b"\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (len(_REFUSED_BODY), _REFUSED_BODY))


@dataclass(frozen=True)
class ServerLimits:
    """What one server accepts. Every figure is documented in docs/sinks/rest.md."""

    backlog: int = 1024  # connections the kernel queues before we accept them
    max_connections: int = 1024  # open at once; beyond it a new one gets 503 and is closed
    idle_timeout: float = 15.0  # seconds a connection may wait for its next request
    header_timeout: float = 10.0  # seconds from a request's first byte to its last header
    max_request_line: int = 8190  # bytes of "GET /path?query HTTP/1.1"
    max_header_size: int = 8190  # bytes of one header line
    max_headers: int = 64  # header lines per request


@dataclass
class ConnectionCounts:
    """Written by the server's thread only; read for the sink's report."""

    refused_connections: int = 0  # over max_connections
    slow_clients_cut: int = 0  # did not send a whole request head within header_timeout
    bad_requests: int = 0  # malformed, or over a line or header limit: answered 400 or 431
    request_errors: int = 0  # a request our code failed on: answered 500


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol, plus the connection cap and the header-read deadline.

    The deadline runs from the first byte received while no request is being read, until the
    parser hands over a complete request head (aiohttp's keep-alive timer does not restart on
    received bytes, so it also bounds a client that trickles; this deadline is the shorter,
    explicit one).

    It reads a few of aiohttp's private attributes (``_request_count``, ``_force_close``,
    ``_manager``, and the server's ``_kwargs``), stable through aiohttp 3.x; hence the ``<4``
    in pyproject.toml, and tests/sinks/test_rest_limits.py fails if one of them changes meaning.
    """

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop,
                 limits: ServerLimits, counts: ConnectionCounts, errors: ThrottledErrors,
                 **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, logger=_AIOHTTP_LINES, **kwargs)
        self._limits = limits
        self._counts = counts
        self._errors = errors
        self._counted = False
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert self._manager is not None
        if len(self._manager.connections) >= self._limits.max_connections:
            self._counts.refused_connections += 1
            self._manager = None  # never registered: connection_lost has nothing to undo
            self._force_close = True
            transport.write(_REFUSED)  # type: ignore[attr-defined]
            transport.close()
            return
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        if self._request_count > before:  # a whole request head arrived
            self._cancel_header_deadline()
        elif self._header_deadline is None and not self._force_close:
            self._header_deadline = self._loop.call_later(
                self._limits.header_timeout, self._cut_slow_client)

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None
                     ) -> web.StreamResponse:
        """Every request answered with an error status: counted, and logged at most once a
        second without what the client sent (aiohttp's message quotes the offending bytes,
        which may hold a token)."""
        if isinstance(exc, HttpProcessingError):
            self._counts.bad_requests += 1
            self._errors.error("refused a bad request (%d so far): %s, HTTP %d",
                               self._counts.bad_requests, type(exc).__name__, exc.code)
        else:
            self._count_failure(exc)
        self._counted = True  # aiohttp's own line for it, through log_exception, is dropped
        try:
            return super().handle_error(request, status, exc, message)
        finally:
            self._counted = False

    def log_exception(self, *args: Any, **kw: Any) -> None:
        if not self._counted:
            self._count_failure(kw.get("exc_info"))

    def _count_failure(self, exc: object) -> None:
        self._counts.request_errors += 1
        self._errors.error("a request failed (%d so far): %s",
                           self._counts.request_errors, type(exc).__name__)

    def _cut_slow_client(self) -> None:
        self._header_deadline = None
        self._counts.slow_clients_cut += 1
        self.force_close()

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it could resolve to anything
        return False


def address_of(setting: str | tuple[str, int]) -> tuple[str, int]:
    """A sink's ``address`` setting: parsed by its option, or still text when the sink was built
    in code."""
    return cli.host_port(setting) if isinstance(setting, str) else setting


class HttpServerThread:
    """Serves ``handler`` on ``address`` from a thread with its own event loop; ``what`` names
    the service in errors (``cannot serve /metrics on 127.0.0.1:9338: …``) and the thread."""

    def __init__(self, address: tuple[str, int], handler: Handler, limits: ServerLimits,
                 what: str, errors_to: logging.Logger = log) -> None:
        self._address = address
        self._handler = handler
        self.limits = limits
        self.what = what
        self.counts = ConnectionCounts()
        self._errors = ThrottledErrors(errors_to)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"http {what}",
                                        daemon=True)
        self._server: web.Server | None = None
        self._listener: asyncio.base_events.Server | None = None
        self.bound: tuple[str, int] = address

    def start(self) -> None:
        """Bind (raising OSError naming the address when that fails) and start serving."""
        host, port = self._address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot serve {self.what} on {host}:{port}: "
                                     f"{exc.strerror}") from None
        self.bound = sock.getsockname()[:2]
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(sock), self.loop).result(30)

    async def _serve(self, sock: socket.socket) -> None:
        limits = self.limits
        self._server = web.Server(
            self._handler, access_log=None, keepalive_timeout=limits.idle_timeout,
            max_line_size=limits.max_request_line, max_field_size=limits.max_header_size,
            max_headers=limits.max_headers)
        server, loop, counts, errors = self._server, self.loop, self.counts, self._errors

        def protocol() -> GuardedRequestHandler:
            return GuardedRequestHandler(server, loop=loop, limits=limits, counts=counts,
                                         errors=errors, **server._kwargs)

        self._listener = await loop.create_server(protocol, sock=sock, backlog=limits.backlog)

    def connections(self) -> int:
        return len(self._server.connections) if self._server is not None else 0

    def counters(self) -> dict[str, int]:
        """For the sink's report: connections open now, and what the limits refused."""
        return {"connections": self.connections(), **asdict(self.counts)}

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    async def _shutdown(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._server is not None:
            await self._server.shutdown(2.0)


def server_counters(server: HttpServerThread | None) -> dict[str, int]:
    """A sink's server counters, zero before it is open."""
    if server is None:
        return {"connections": 0, **asdict(ConnectionCounts())}
    return server.counters()
