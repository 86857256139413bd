"""The REST sink: the latest sample of every container as JSON over HTTP, and a live page.

Data model (``GET`` only; anything else is 405):

- ``/stats`` → ``[sample, …]``: the latest sample of every container, each an object with the
  wire field names (docs/wire-schema.md), sorted by host then name. Filters, combined with AND:
  ``?host=NAME`` and ``?label=SELECTOR`` (repeatable), the router's label selectors without
  their ``label=``: ``KEY=VALUE``, ``KEY!=VALUE``, ``KEY`` (docs/labels.md).
- ``/stats/{name}`` → one sample; the name is URL-decoded (``%20``, ``%22``, UTF-8). 404
  ``{"error": …}`` when no container has that name, 409 when several hosts have one (add
  ``?host=``).
- ``/states`` → ``[state, …]``: the latest state message (wire 1.1 ``kind: "state"``: status,
  health, restarts, exit code, …) of every container, running or not, by host then name; the
  same ``?host=`` and ``?label=`` filters. ``/states/{name}`` → one, with the same 404/409 as
  ``/stats/{name}``. A stopped container's sample leaves ``/stats``; its state stays here (as
  ``exited``) until it is removed.
- ``/engines`` → ``[engine, …]``: the latest engine figures of every host (``kind:
  "engine"``), by host; ``?host=`` filters.
- ``/healthz`` → ``{"status": "ok", "containers": N}``; ``/openapi.json`` → the OpenAPI 3.0
  description.
- ``/`` (and its ``/web/…`` assets) → the live fleet page; ``/events`` → the server-sent event
  stream that feeds it (rest_web.py).
- With ``--rest.token`` every path except ``/healthz``, ``/openapi.json`` and the page's files
  needs ``Authorization: Bearer TOKEN`` (401 otherwise): liveness probes, API browsers and a
  browser opening the page need no secret, and none of those paths shows a container.
  ``/events`` also takes ``?token=``, because a browser's EventSource cannot send a header.

Delivery: latest value only; a message is delivered once a GET can return it. A container's
sample is removed on its stop, rename (it comes back under its new name with its next sample)
and destroy events, its state on rename and destroy (sinks/latest.py). Staleness: a sample,
state or engine message leaves after ``STALE_INTERVALS`` (3) of its own ``interval_s`` without a
newer one (its collector died); a sample without ``interval_s`` (a wire 1.0 collector) stays
until its container's events remove it.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from aiohttp import web

from statspout import cli, wire
from statspout.selectors import BadSelector, Selector
from statspout.sinks.base import Option
from statspout.sinks.http_serving import (
    HttpServerThread,
    ServerLimits,
    address_of,
    is_loopback,
    server_counters,
)
from statspout.sinks.latest import STALE_INTERVALS, LatestSamples, LatestSampleSink
from statspout.sinks.rest_web import MAX_EVENT_CLIENTS, PAGE_PATHS, PageAssets, SnapshotStream

log = logging.getLogger("statspout.sink.rest")

OPEN_PATHS = frozenset({"/healthz", "/openapi.json"}) | PAGE_PATHS
EVENTS_PATH = "/events"
_INT64 = {"type": "integer", "format": "int64"}
_JSON_TYPES: dict[str, dict[str, Any]] = {
    "int": _INT64, "float": {"type": "number"}, "str": {"type": "string"},
    "bool": {"type": "boolean"},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "int_map": {"type": "object", "additionalProperties": _INT64},
    "int_maps": {"type": "object", "additionalProperties": {
        "type": "object", "additionalProperties": _INT64}},
}


def _field_schema(spec: wire.FieldSpec) -> dict[str, Any]:
    unit = f" [{spec.unit}]" if spec.unit else ""
    return {**_JSON_TYPES[spec.type], "description": spec.description + unit,
            **({"nullable": True} if spec.nullable else {})}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


def _listing(summary: str, schema: str, what: str) -> dict[str, Any]:
    """A path that lists one entry per container, filtered by host and labels."""
    return {
        "summary": summary,
        "parameters": [
            {"name": "host", "in": "query", "schema": {"type": "string"}},
            {"name": "label", "in": "query",
             "description": "KEY=VALUE, KEY!=VALUE or KEY (docs/labels.md); repeatable, "
                            "all must match",
             "schema": {"type": "array", "items": {"type": "string"}}, "explode": True},
        ],
        "responses": {"200": {"description": what, "content": {"application/json": {
            "schema": {"type": "array", "items": {"$ref": f"#/components/schemas/{schema}"}}}}},
            "400": _error("malformed filter"), "401": _error("missing or wrong token")},
    }


def _one(summary: str, schema: str, what: str) -> dict[str, Any]:
    """A path that answers the entry of one container, by name (and host when ambiguous)."""
    return {
        "summary": summary,
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "host", "in": "query", "schema": {"type": "string"}},
        ],
        "responses": {"200": {"description": what, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{schema}"}}}},
            "401": _error("missing or wrong token"), "404": _error("unknown container"),
            "409": _error("the name exists on several hosts")},
    }


# Built from the wire schema's field table, so that the description cannot drift from it.
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "statspout REST sink", "version": wire.SCHEMA_VERSION,
             "description": "The latest sample of every container."},
    "paths": {
        "/stats": {"get": _listing("The latest sample of every container", "ContainerStats",
                                   "samples")},
        "/stats/{name}": {"get": _one("The latest sample of one container", "ContainerStats",
                                      "the sample")},
        "/states": {"get": _listing("The latest state of every container, running or not",
                                    "ContainerState", "states")},
        "/states/{name}": {"get": _one("The latest state of one container", "ContainerState",
                                       "the state")},
        "/engines": {"get": {
            "summary": "The latest engine figures of every host",
            "parameters": [{"name": "host", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "engines", "content": {"application/json": {
                "schema": {"type": "array",
                           "items": {"$ref": "#/components/schemas/EngineInfo"}}}}},
                "401": _error("missing or wrong token")},
        }},
        "/events": {"get": {
            "summary": "Server-sent events: about once a second, the latest samples of every "
                       "container as {fields, rows, server_time_ms} (docs/sinks/rest.md)",
            "parameters": [{"name": "token", "in": "query", "schema": {"type": "string"},
                            "description": "the bearer token, for clients that cannot send "
                                           "a header (a browser's EventSource)"}],
            "responses": {"200": {"description": "the stream", "content": {
                "text/event-stream": {"schema": {"type": "string"}}}},
                "401": _error("missing or wrong token"),
                "503": _error("too many pages watching")},
        }},
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {
            "description": "serving", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"status": {"type": "string"},
                                                 "containers": {"type": "integer"}}}}}}}}},
    },
    "components": {
        "schemas": {
            "ContainerStats": {
                "type": "object", "required": [s.name for s in wire.STATS_FIELDS],
                "properties": {s.name: _field_schema(s) for s in wire.STATS_FIELDS}},
            "ContainerState": {
                "type": "object", "required": [s.name for s in wire.STATE_FIELDS],
                "properties": {s.name: _field_schema(s) for s in wire.STATE_FIELDS}},
            "EngineInfo": {
                "type": "object", "required": [s.name for s in wire.ENGINE_FIELDS],
                "properties": {s.name: _field_schema(s) for s in wire.ENGINE_FIELDS}},
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"}}},
        },
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
}


class RestApi:
    """Answers every request (the JSON API, the page's files, the event stream): one aiohttp
    handler dispatching on the raw path, so that a name is decoded exactly once and every error
    is the same JSON shape."""

    def __init__(self, samples: LatestSamples, token: str | None, max_event_clients: int
                 ) -> None:
        self.samples = samples
        self.token = token.encode() if token else None
        self.page = PageAssets()
        self._everything_cache: tuple[list[wire.ContainerStats], bytes] = ([], b"[]")
        self.events = SnapshotStream(samples, max_event_clients)

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method != "GET":
            return json_response(405, {"error": f"{request.method} is not allowed; use GET"},
                                 {"Allow": "GET"})
        url = urlsplit(request.raw_path)
        path, query = url.path, parse_qs(url.query, keep_blank_values=True)
        given_in_query = query.get("token", [""])[-1] if path == EVENTS_PATH else ""
        if path not in OPEN_PATHS and not self.authorized(request, given_in_query):
            return json_response(401, {"error": "missing or wrong bearer token"},
                                 {"WWW-Authenticate": 'Bearer realm="statspout"'})
        if path in PAGE_PATHS:
            return self.page.response(path)
        if path == EVENTS_PATH:
            return await self.events.serve(request)
        if path == "/healthz":
            return json_response(200, {"status": "ok", "containers": len(self.samples)})
        if path == "/openapi.json":
            return json_response(200, OPENAPI)
        if path == "/stats":
            return self._list(query)
        if path == "/states":
            return self._list(query, states=True)
        if path == "/engines":
            hosts = query.get("host")
            return json_response(200, [e.to_dict() for e in self.samples.engines()
                                       if hosts is None or e.host in hosts])
        for prefix in ("/stats/", "/states/"):
            if path.startswith(prefix) and len(path) > len(prefix):
                try:
                    name = unquote(path[len(prefix):], errors="strict")
                except UnicodeDecodeError:
                    return json_response(
                        400, {"error": "the container name is not URL-encoded UTF-8"})
                return self._one(name, query, states=prefix == "/states/")
        return json_response(404, {"error": f"no such path: {path}"})

    def authorized(self, request: web.BaseRequest, given_in_query: str = "") -> bool:
        if self.token is None:
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            given = given_in_query
        # Constant time, so that response timing does not reveal how much of a guess matched.
        return bool(given) and hmac.compare_digest(given.strip().encode(), self.token)

    def _list(self, query: dict[str, list[str]], states: bool = False) -> web.Response:
        try:
            selectors = [Selector.parse("label=" + text) for text in query.get("label", [])]
        except BadSelector as exc:
            return json_response(400, {"error": f"label filter: {exc}"})
        hosts = query.get("host")
        current: list[wire.ContainerStats] | list[wire.ContainerState]
        if states:
            current = self.samples.states()
        else:
            current = self.samples.current()
            if hosts is None and not selectors:
                return self._everything(current)
        chosen = [s.to_dict() for s in current
                  if (hosts is None or s.host in hosts)
                  and all(selector.matches(s) for selector in selectors)]
        return json_response(200, chosen)

    def _everything(self, current: list[wire.ContainerStats]) -> web.Response:
        """The unfiltered list, encoded once per change of the table: encoding is nearly all of
        a request's cost, and most polls find the same samples. Samples are immutable and a new
        one is a new object, so the same objects in the same order mean the same body. (Only the
        server's one thread reads and writes this cache.)"""
        cached_samples, body = self._everything_cache
        if len(cached_samples) != len(current) or any(
                a is not b for a, b in zip(cached_samples, current, strict=True)):
            body = json.dumps([s.to_dict() for s in current], ensure_ascii=False).encode()
            self._everything_cache = (current, body)
        return web.Response(status=200, body=body, content_type="application/json",
                            charset="utf-8")

    def _one(self, name: str, query: dict[str, list[str]], states: bool = False
             ) -> web.Response:
        hosts = query.get("host")
        current: list[wire.ContainerStats] | list[wire.ContainerState] = (
            self.samples.states() if states else self.samples.current())
        found = [s for s in current if s.name == name and (hosts is None or s.host in hosts)]
        if not found:
            return json_response(404, {"error": f"no container named {name!r}"})
        if len(found) > 1:
            return json_response(409, {"error": f"{name!r} is on hosts "
                                                f"{', '.join(s.host for s in found)}; add ?host="})
        return json_response(200, found[0].to_dict())


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None
                  ) -> web.Response:
    return web.Response(status=status, body=json.dumps(body, ensure_ascii=False).encode(),
                        content_type="application/json", charset="utf-8", headers=headers)


class RestSink(LatestSampleSink):
    name = "rest"
    options = (
        Option("address", "HOST:PORT to serve on", default="127.0.0.1:8080", type=cli.host_port),
        Option("token", "bearer token every request but /healthz, /openapi.json and the page "
                        "must carry", secret=True),
        Option("backlog", "connections the kernel queues before the server accepts them",
               default=ServerLimits.backlog, type=cli.positive_int),
        Option("max-connections", "connections open at once; a new one beyond it gets 503",
               default=ServerLimits.max_connections, type=cli.positive_int),
        Option("idle-timeout", "seconds a connection may wait for its next request",
               default=ServerLimits.idle_timeout, type=cli.seconds(0.1)),
        Option("header-timeout", "seconds from a request's first byte to its last header line",
               default=ServerLimits.header_timeout, type=cli.seconds(0.1)),
        Option("max-request-line", "bytes of the request line (method, path, query, version)",
               default=ServerLimits.max_request_line, type=cli.whole_number(256)),
        Option("max-header-size", "bytes of one header line",
               default=ServerLimits.max_header_size, type=cli.whole_number(256)),
        Option("max-headers", "header lines per request",
               default=ServerLimits.max_headers, type=cli.positive_int),
        Option("max-event-clients", "pages watching /events at once; one more gets 503",
               default=MAX_EVENT_CLIENTS, type=cli.positive_int),
    )

    def __init__(self, settings: SimpleNamespace) -> None:
        super().__init__(settings, LatestSamples(stale_intervals=STALE_INTERVALS))
        self._address = address_of(settings.address)
        self._server: HttpServerThread | None = None
        self._api: RestApi | None = None

    def limits(self) -> ServerLimits:
        """The settings as server limits; a setting a caller left out keeps its default."""
        defaults = ServerLimits()
        return ServerLimits(**{field: getattr(self.settings, field, getattr(defaults, field))
                               for field in defaults.__dataclass_fields__})

    def open(self) -> None:
        host = self._address[0]
        if not self.settings.token and not is_loopback(host):
            log.warning("serving REST on %s without --rest.token: anyone who can reach this "
                        "address reads every container's figures", host)
        self._api = RestApi(self.samples, self.settings.token,
                            getattr(self.settings, "max_event_clients", MAX_EVENT_CLIENTS))
        self._server = HttpServerThread(self._address, self._api, self.limits(), "REST", log)
        self._server.start()
        log.info("serving REST on %s:%d", *self._server.bound)

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()

    def counters(self) -> Mapping[str, int]:
        server, api = self._server, self._api
        return {**super().counters(), **server_counters(server),
                "event_clients": api.events.clients if api is not None else 0,
                "refused_event_clients": api.events.refused_clients if api is not None else 0}
