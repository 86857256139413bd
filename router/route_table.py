"""Which routes a message goes to (the precedence is written out in docs/routing.md).

1. ``statspout.ignore=true``: no route at all.
2. The router's own ``--include``/``--exclude``: what fails them goes nowhere.
3. ``statspout.routes=a,b``: only the named routes (``all`` too, if named). A named route still
   applies its ``exclude``, but not its ``include``: naming a route is the container's way in,
   the operator's exclude keeps the last word. Names of routes that do not exist are skipped.
4. Otherwise: ``all``, plus every route whose include matches (or has none) and exclude does not.

Events and states carry the container's labels, name, image and host, so they take the same
routes as its samples. Engine messages (one per host, no container) are judged on ``host=``
selectors alone, in the router's filter and in each route: they go to every route whose host
selectors pass (a route without any takes them); ``statspout.*`` labels do not apply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from statspout import bus
from statspout.selectors import SelectorFilter
from statspout.wire import (
    ContainerIdentity,
    ContainerScoped,
    EngineInfo,
    Message,
    identity_of,
)

IGNORE_LABEL = "statspout.ignore"
# The route-decision cache holds at most this many bytes of keys (host, name, image and
# labels, in UTF-8 plus an overhead per string), so that large labels cannot grow it without
# bound; when full it starts afresh. The cache of batches' container entries has as many.
DECISION_CACHE_BYTES = 32 * 2**20
_OVERHEAD_PER_STRING = 64  # a small Python str object and its place in the key's tuple or set
ROUTES_LABEL = "statspout.routes"

log = logging.getLogger("statspout.router")


class RouteTable:
    def __init__(
        self,
        selector_filter: SelectorFilter | None = None,
        routes: Mapping[str, SelectorFilter] | None = None,
    ) -> None:
        self._filter = selector_filter or SelectorFilter()
        # ``all`` is a route without selectors, so every step below treats it like the others.
        self._routes = {bus.DEFAULT_ROUTE: SelectorFilter(), **(routes or {})}
        self._unknown_logged: set[str] = set()
        # A container's routes depend only on what the selectors look at, which changes
        # rarely (a rename), so each answer is kept: matching is most of the router's work
        # per message otherwise. A reload builds a new table, and with it a new cache.
        self._decided: dict[tuple, list[str]] = {}
        self._decided_bytes = 0
        # Batches' container entries already checked, by (host, id, name, image): their labels
        # and routes; bounded like the decisions (DECISION_CACHE_BYTES of keys and labels).
        self._entries: dict[tuple, tuple[Any, list[str]]] = {}
        self._entries_bytes = 0

    @property
    def names(self) -> list[str]:
        return list(self._routes)

    def with_routes(self, routes: Mapping[str, SelectorFilter]) -> RouteTable:
        """The same router filter with another set of routes (a reloaded routes file)."""
        return RouteTable(self._filter, routes)

    def routes_for(self, message: Message | ContainerIdentity) -> list[str]:
        """The routes of this message (or of a batch's container entry: its items'), in table
        order. The list is shared: do not change it."""
        if isinstance(message, EngineInfo):
            return self.engine_routes(message.host)
        key = (message.host, message.name, message.image, frozenset(message.labels.items()))
        return self._cached(key, _key_bytes(message), lambda: self._decide(message))

    def _cached(self, key: tuple, size: int, decide: Callable[[], list[str]]) -> list[str]:
        routes = self._decided.get(key)
        if routes is None:
            routes = decide()
            if self._decided_bytes + size > DECISION_CACHE_BYTES:
                self._decided.clear()
                self._decided_bytes = 0
            if size <= DECISION_CACHE_BYTES:
                self._decided[key] = routes
                self._decided_bytes += size
        return routes

    def routes_for_entry(self, host: str, entry: Any) -> list[str]:
        """The routes of a batch's container entry (``wire.identity_of``); MalformedMessage
        when it is not valid. An entry equal to one seen before is neither checked nor
        decided again: the batches of a collector name the same containers cycle after
        cycle, and checking their labels would be most of the router's work per batch."""
        key: tuple | None = None
        if type(entry) is list and len(entry) == 4:
            try:
                key = (host, entry[0], entry[1], entry[2])
                known = self._entries.get(key)
            except TypeError:  # an unhashable id, name or image: invalid, found out below
                key = known = None
            if known is not None and known[0] == entry[3]:
                return known[1]
        identity = identity_of(host, entry)
        routes = self.routes_for(identity)
        size = _key_bytes(identity)
        if self._entries_bytes + size > DECISION_CACHE_BYTES:
            self._entries.clear()
            self._entries_bytes = 0
        if key is not None and size <= DECISION_CACHE_BYTES:
            self._entries[key] = (identity.labels, routes)
            self._entries_bytes += size
        return routes

    @property
    def cache_bytes(self) -> int:
        """The size of the decision cache's keys, as counted against DECISION_CACHE_BYTES."""
        return self._decided_bytes

    def engine_routes(self, host: str) -> list[str]:
        """The routes of a host's engine messages (in a batch: its items about no container)."""
        return self._cached(("engine", host), _OVERHEAD_PER_STRING + 4 * len(host),
                            lambda: self._engine_routes(host))

    def _engine_routes(self, host: str) -> list[str]:
        if not _host_only_passes(self._filter, host):
            return []
        return [name for name, route in self._routes.items() if _host_only_passes(route, host)]

    def _decide(self, message: ContainerScoped) -> list[str]:
        labels = message.labels
        if labels.get(IGNORE_LABEL, "").strip().lower() == "true":
            return []
        if not self._filter.passes(message):
            return []
        named = _named_routes(labels.get(ROUTES_LABEL, ""))
        if named:
            return [name for name in named if self._named_route_takes(name, message)]
        return [name for name, route in self._routes.items() if route.passes(message)]

    def _named_route_takes(self, name: str, message: ContainerScoped) -> bool:
        route = self._routes.get(name)
        if route is None:
            if name not in self._unknown_logged:  # once per name, not once per sample
                self._unknown_logged.add(name)
                log.warning("container %s on %s names unknown route %r in %s",
                            message.name, message.host, name, ROUTES_LABEL)
            return False
        return not any(selector.matches(message) for selector in route.exclude)


def _key_bytes(message: ContainerScoped) -> int:
    """About what a cache key of ``message`` holds: its strings (counted as UTF-8 upper bound:
    4 bytes a character) and an overhead for each."""
    strings = 3 + 2 * len(message.labels)
    characters = len(message.host) + len(message.name) + len(message.image) + sum(
        len(key) + len(value) for key, value in message.labels.items())
    return 4 * characters + _OVERHEAD_PER_STRING * strings


def _host_only_passes(selectors: SelectorFilter, host: str) -> bool:
    """A filter judged on its ``host=`` selectors alone: the others are about containers, which
    an engine message has none of, so they neither let it in nor keep it out."""
    include = [s for s in selectors.include if s.kind == "host"]
    exclude = [s for s in selectors.exclude if s.kind == "host"]
    if include and not any(fnmatchcase(host, s.key) for s in include):
        return False
    return not any(fnmatchcase(host, s.key) for s in exclude)


def _named_routes(value: str) -> list[str]:
    """``"a, b,a"`` → ``["a", "b"]``; an empty value names nothing (the label is ignored)."""
    names: list[str] = []
    for part in value.split(","):
        name = part.strip()
        if name and name not in names:
            names.append(name)
    return names
