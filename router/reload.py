"""Reloading on SIGHUP: the routes file and the authorized keys, without dropping collectors.

A file that cannot be used is rejected with one error line and what was in force stays. When a
key was removed from the authorized folder, the output socket is bound anew: ZeroMQ checks keys
only at the handshake, so this is how a sink whose key was removed is cut off (the others
reconnect within ZeroMQ's reconnect interval and see the gap in the route's sequence). On the
input, the router drops messages of removed keys itself, so collectors are never disconnected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import zmq

from statspout.backoff import Backoff
from statspout.router.loop import Router
from statspout.router.routes_file import BadRoutes, load_routes
from statspout.security import Authenticator, BadKey

log = logging.getLogger("statspout.router")

# How long a re-bind of the output may wait for the old listener to let go of the port.
REBIND_DEADLINE_S = 10.0


class Reloader:
    def __init__(
        self,
        routes_file: str | Path | None,
        authenticator: Authenticator | None,
        bind_output: Callable[[], zmq.Socket],
    ) -> None:
        self._routes_file = routes_file
        self._authenticator = authenticator
        self._bind_output = bind_output

    def __call__(self, router: Router) -> None:
        if self._routes_file is not None:
            self._reload_routes(router, self._routes_file)
        if self._authenticator is not None:
            self._reload_keys(router, self._authenticator)

    def _reload_routes(self, router: Router, routes_file: str | Path) -> None:
        try:
            routes = load_routes(routes_file)
        except BadRoutes as exc:
            log.error("reload rejected, the routes in force stay: %s", exc)
            return
        router.replace_routes(router.routes.with_routes(routes))
        log.info("reloaded %s: routes %s", routes_file, ", ".join(router.routes.names))

    def _reload_keys(self, router: Router, authenticator: Authenticator) -> None:
        try:
            removed = authenticator.reload()
        except BadKey as exc:
            log.error("reload rejected, the authorized keys in force stay: %s", exc)
            return
        log.info("reloaded %s: %d authorized key(s), %d removed",
                 authenticator.folder, len(authenticator.keys), len(removed))
        if removed:
            self._rebind_output(router)

    def _rebind_output(self, router: Router) -> None:
        router.output.setsockopt(zmq.LINGER, 0)
        router.output.close()
        deadline = time.monotonic() + REBIND_DEADLINE_S
        waits = Backoff(first_s=0.05, max_s=0.5)
        while True:
            try:
                router.replace_output(self._bind_output())
                return
            except zmq.ZMQError as exc:
                # The old listener is closed by ZeroMQ's I/O thread shortly after close().
                if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                    raise RuntimeError(f"cannot bind the output again: {exc}") from exc
                time.sleep(waits.next_delay())
