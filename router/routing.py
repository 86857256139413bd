"""Which routes a message goes to. Every message that passes the router's filter and does not
carry ``statspout.ignore=true`` goes to the route ``all``."""

from __future__ import annotations

from statspout import bus
from statspout.router.selectors import SelectorFilter
from statspout.wire import Message

IGNORE_LABEL = "statspout.ignore"


class RouteTable:
    def __init__(self, selector_filter: SelectorFilter | None = None) -> None:
        self._filter = selector_filter or SelectorFilter()

    @property
    def names(self) -> list[str]:
        return [bus.DEFAULT_ROUTE]

    def routes_for(self, message: Message) -> list[str]:
        if message.labels.get(IGNORE_LABEL, "").lower() == "true":
            return []
        if not self._filter.passes(message):
            return []
        return [bus.DEFAULT_ROUTE]
