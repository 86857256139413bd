"""The REST sink: the latest sample of every container as JSON over HTTP.

Data model (``GET`` only; anything else is 405):

- ``/stats`` → ``[sample, …]``: the latest sample of every container, each an object with the
  wire field names (docs/wire-schema.md), sorted by host then name. Filters, combined with AND:
  ``?host=NAME`` and ``?label=KEY=VALUE`` (repeatable; split at the first ``=``).
- ``/stats/{name}`` → one sample; the name is URL-decoded (``%20``, ``%22``, UTF-8). 404
  ``{"error": …}`` when no container has that name, 409 when several hosts have one (add
  ``?host=``).
- ``/healthz`` → ``{"status": "ok", "containers": N}``; ``/openapi.json`` → the OpenAPI 3.0
  description.
- With ``--rest.token`` every path except ``/healthz`` and ``/openapi.json`` needs
  ``Authorization: Bearer TOKEN`` (401 otherwise): liveness probes and API browsers need no
  secret, and neither path shows a container.

Delivery: latest value only; a sample is delivered once a GET can return it. A container is
removed on its stop, rename (it comes back under its new name with its next sample) and destroy
events.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from statspout import cli, wire
from statspout.sinks.base import Option
from statspout.sinks.latest import LatestSamples, LatestSampleSink

log = logging.getLogger("statspout.sink.rest")

OPEN_PATHS = ("/healthz", "/openapi.json")
_JSON_TYPES = {"int": {"type": "integer", "format": "int64"}, "float": {"type": "number"},
               "str": {"type": "string"},
               "labels": {"type": "object", "additionalProperties": {"type": "string"}},
               "bool": {"type": "boolean"},
               "int_map": {"type": "object", "additionalProperties": {
                   "type": "integer", "format": "int64"}},
               "int_maps": {"type": "object", "additionalProperties": {
                   "type": "object", "additionalProperties": {
                       "type": "integer", "format": "int64"}}}}


def _field_schema(spec: wire.FieldSpec) -> dict[str, Any]:
    unit = f" [{spec.unit}]" if spec.unit else ""
    return {**_JSON_TYPES[spec.type], "description": spec.description + unit,
            **({"nullable": True} if spec.nullable else {})}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


# Built from the wire schema's field table, so that the description cannot drift from it.
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "statspout REST sink", "version": wire.SCHEMA_VERSION,
             "description": "The latest sample of every container."},
    "paths": {
        "/stats": {"get": {
            "summary": "The latest sample of every container",
            "parameters": [
                {"name": "host", "in": "query", "schema": {"type": "string"}},
                {"name": "label", "in": "query", "description": "KEY=VALUE, repeatable",
                 "schema": {"type": "array", "items": {"type": "string"}}, "explode": True},
            ],
            "responses": {"200": {"description": "samples", "content": {"application/json": {
                "schema": {"type": "array",
                           "items": {"$ref": "#/components/schemas/ContainerStats"}}}}},
                "400": _error("malformed filter"), "401": _error("missing or wrong token")},
        }},
        "/stats/{name}": {"get": {
            "summary": "The latest sample of one container",
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "host", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "the sample", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ContainerStats"}}}},
                "401": _error("missing or wrong token"), "404": _error("unknown container"),
                "409": _error("the name exists on several hosts")},
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
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"}}},
        },
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
}


class RestServer(ThreadingHTTPServer):
    """Carries what the handlers need, so that they reach it as ``self.server``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], samples: LatestSamples, token: str | None
                 ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.samples = samples
        self.token = token.encode() if token else None
        super().__init__(address, RestHandler)


class RestHandler(BaseHTTPRequestHandler):
    server: RestServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query, keep_blank_values=True)
        if path not in OPEN_PATHS and not self._authorized():
            self.send_json(401, {"error": "missing or wrong bearer token"},
                           {"WWW-Authenticate": 'Bearer realm="statspout"'})
        elif path == "/healthz":
            self.send_json(200, {"status": "ok", "containers": len(self.server.samples)})
        elif path == "/openapi.json":
            self.send_json(200, OPENAPI)
        elif path == "/stats":
            self._list(query)
        elif path.startswith("/stats/") and len(path) > len("/stats/"):
            try:
                name = unquote(path[len("/stats/"):], errors="strict")
            except UnicodeDecodeError:
                self.send_json(400, {"error": "the container name is not URL-encoded UTF-8"})
                return
            self._one(name, query)
        else:
            self.send_json(404, {"error": f"no such path: {path}"})

    def _authorized(self) -> bool:
        if self.server.token is None:
            return True
        scheme, _, given = self.headers.get("Authorization", "").partition(" ")
        # Constant time, so that response timing does not reveal how much of a guess matched.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.server.token)

    def _list(self, query: dict[str, list[str]]) -> None:
        selectors = []
        for selector in query.get("label", []):
            key, sep, value = selector.partition("=")
            if not sep or not key:
                self.send_json(400, {"error": f"label filter {selector!r} is not KEY=VALUE"})
                return
            selectors.append((key, value))
        hosts = query.get("host")
        chosen = [s.to_dict() for s in self.server.samples.current()
                  if (hosts is None or s.host in hosts)
                  and all(s.labels.get(key) == value for key, value in selectors)]
        self.send_json(200, chosen)

    def _one(self, name: str, query: dict[str, list[str]]) -> None:
        hosts = query.get("host")
        found = [s for s in self.server.samples.current()
                 if s.name == name and (hosts is None or s.host in hosts)]
        if not found:
            self.send_json(404, {"error": f"no container named {name!r}"})
        elif len(found) > 1:
            self.send_json(409, {"error": f"{name!r} is on hosts "
                                          f"{', '.join(s.host for s in found)}; add ?host="})
        else:
            self.send_json(200, found[0].to_dict())

    def _not_allowed(self) -> None:
        self.send_json(405, {"error": f"{self.command} is not allowed; use GET"}, {"Allow": "GET"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _not_allowed  # noqa: N815

    def send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None
                  ) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("%s %s", self.address_string(), format % args)


class RestSink(LatestSampleSink):
    name = "rest"
    options = (
        Option("address", "HOST:PORT to serve on", default="127.0.0.1:8080", type=cli.host_port),
        Option("token", "bearer token every request but /healthz and /openapi.json must carry",
               secret=True),
    )

    def __init__(self, settings: SimpleNamespace) -> None:
        super().__init__(settings, LatestSamples())
        address = settings.address
        self._address = cli.host_port(address) if isinstance(address, str) else address
        self._server: RestServer | None = None

    def open(self) -> None:
        self._server = RestServer(self._address, self.samples, self.settings.token)
        threading.Thread(target=self._server.serve_forever, name="rest-sink-http",
                         daemon=True).start()
        log.info("serving REST on %s:%d", *self._server.server_address[:2])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
