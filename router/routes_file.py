"""The routes file: named routes, each with include and exclude selectors (docs/routing.md).

    [routes.prod]
    include = ["label=env=prod"]
    exclude = ["name=*-debug"]

Loading either returns every route or raises BadRoutes with one line naming the file and the
problem, so that a reload with a broken file can keep the routes in force.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from statspout import bus
from statspout.selectors import BadSelector, SelectorFilter

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the tomli package (a dependency there) reads the same
    import tomli as tomllib

# Route names become topic prefixes (bus.topic_for) and command-line values: keep them plain.
_ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ROUTE_KEYS = {"include", "exclude"}


class BadRoutes(ValueError):
    """A routes file that cannot be used; the text is one line naming the file and the fault."""


def load_routes(path: str | Path) -> dict[str, SelectorFilter]:
    """The routes of a file, by name, in the file's order. ``all`` is not among them: it is
    built in and may not be redefined."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise BadRoutes(f"routes file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadRoutes(f"routes file {path}: not valid TOML: {exc}") from None
    return parse_routes(document, str(path))


def parse_routes(document: dict[str, Any], source: str = "routes") -> dict[str, SelectorFilter]:
    unknown = set(document) - {"routes"}
    if unknown:
        raise BadRoutes(f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}; "
                        "routes are tables named [routes.NAME]")
    tables = document.get("routes", {})
    if not isinstance(tables, dict):
        raise BadRoutes(f"{source}: 'routes' must be tables [routes.NAME]")
    routes: dict[str, SelectorFilter] = {}
    for name, table in tables.items():
        where = f"{source}: route {name!r}"
        if name == bus.DEFAULT_ROUTE:
            raise BadRoutes(f"{where} is built in (everything not ignored) and cannot be defined")
        if not _ROUTE_NAME.match(name):
            raise BadRoutes(f"{where}: names are letters, digits, '_', '.', '-' (at most 64)")
        if not isinstance(table, dict):
            raise BadRoutes(f"{where} must be a table [routes.{name}]")
        extra = set(table) - _ROUTE_KEYS
        if extra:
            raise BadRoutes(f"{where}: unknown key(s) {', '.join(sorted(extra))} "
                            "(known: include, exclude)")
        try:
            routes[name] = SelectorFilter.parse(
                _selector_list(table, "include", where), _selector_list(table, "exclude", where)
            )
        except BadSelector as exc:
            raise BadRoutes(f"{where}: {exc}") from None
    return routes


def _selector_list(table: dict[str, Any], key: str, where: str) -> list[str]:
    value = table.get(key, [])
    if isinstance(value, str):  # a lone selector is an easy slip; accept it as a list of one
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadRoutes(f"{where}: {key} must be a list of selector strings")
    return value
