"""The MongoDB sink: one document per sample, state and engine message, batched with unordered
``insert_many`` into three collections (``stats``, ``states``, ``engines`` by default).

Data model (docs/sinks/mongodb.md has the full tables)::

    stats:   {_id: "<host>/<id>/<timestamp ns>",   # deterministic: a retried insert never
                                                   # duplicates
              timestamp: Date (UTC, ms), timestamp_ns: Int64 (the exact sample time),
              seq, host, id, name, image,
              labels: [{key: "com.docker.compose.project", value: "shop"}, ...],  # by key
              cpu_percent, cpu_usage_ns, ..., pids, ...,   # every wire figure, by its wire name
              mem_stat: [{key, value}], net_interfaces: [{name, rx_bytes, ...}],
              blk_devices: [{device: "8:0", read_bytes, write_bytes}]}
    states:  {_id: "<host>/<id>/<timestamp ns>", the same identity fields, status, health, ...,
              started_at / finished_at: Date or null, started_at_ns / finished_at_ns: Int64}
    engines: {_id: "<host>/<timestamp ns>", timestamp, timestamp_ns, seq, host, engine, ...}

Labels and the wire's maps are arrays of documents rather than sub-documents keyed by the map's
keys: label keys routinely contain dots (``com.docker.compose.project``) and may start with
``$``, interface names may hold dots (``eth0.100``), and field names cannot carry those
faithfully (dots are path separators). Query a label with
``{"labels": {"$elemMatch": {"key": "com.docker.compose.project", "value": "shop"}}}``.
Integers are stored as Int64 everywhere (inside the arrays too), the percentages and intervals
as doubles. Indexes on (name, timestamp) (engines: (host, timestamp)) and, with
``--mongodb.ttl``, a TTL index on timestamp are created in each collection before the first
write. States and engines go through the same buffer as samples (order, outages, checkpoints).
Events change nothing: documents are history, and there is nothing to forget.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pymongo
from bson import Int64
from bson.errors import InvalidDocument
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure, PyMongoError

from statspout import cli, wire
from statspout.sinks.base import Option
from statspout.sinks.delivery import DeliveringSink, Failure, PartialWrite, delivery_options
from statspout.wire import (
    ENGINE_FIELDS,
    STATE_FIELDS,
    STATS_FIELDS,
    ContainerState,
    ContainerStats,
    EngineInfo,
)

log = logging.getLogger("statspout.sink.mongodb")

_DUPLICATE_KEY = 11000
_INDEX_CONFLICT = (85, 86)  # IndexOptionsConflict, IndexKeySpecsConflict
# Refusals of the client, not of a document: every part of a split batch would meet them.
_NOT_ABOUT_THE_DATA = (13, 18, 8000)  # Unauthorized, AuthenticationFailed, AtlasError
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_IDENTITY = wire.IDENTITY_NAMES
# Times of a state, stored as a Date and, exactly, as Int64 ns under NAME_ns.
_STATE_TIMES = ("started_at", "finished_at")
# Every other wire field is a figure, stored under its wire name.
_FIGURES = tuple(spec.name for spec in STATS_FIELDS if spec.name not in _IDENTITY)
_STATE_FIGURES = tuple(spec.name for spec in STATE_FIELDS
                       if spec.name not in _IDENTITY and spec.name not in _STATE_TIMES)
_ENGINE_FIGURES = tuple(spec.name for spec in ENGINE_FIELDS if spec.name not in _IDENTITY)
# How each map-valued field is stored: an array of documents, the map's key under this name.
MAP_KEYS = {"mem_stat": "key", "net_interfaces": "name", "blk_devices": "device"}

Stored = ContainerStats | ContainerState | EngineInfo


def document_id(message: Stored) -> str:
    if isinstance(message, EngineInfo):
        return f"{message.host}/{message.timestamp}"
    return f"{message.host}/{message.id}/{message.timestamp}"


def _date(timestamp_ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=timestamp_ns // 1000)


def _bson(value: Any) -> Any:
    # Int64 always, so that a field has one BSON type whatever its size; the wire's checks
    # keep every integer below 2^63, so none needs capping here. (bool is not an int here.)
    return Int64(value) if type(value) is int else value


def map_as_array(name: str, value: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
    """A wire map as an array sorted by key: ``{"eth0": {...}}`` → ``[{"name": "eth0", ...}]``;
    ``{"rss": 5}`` → ``[{"key": "rss", "value": 5}]``."""
    if value is None:
        return None
    key_name = MAP_KEYS[name]
    if name == "mem_stat":
        return [{key_name: k, "value": _bson(v)} for k, v in sorted(value.items())]
    return [{key_name: k, **{f: _bson(n) for f, n in sorted(counters.items())}}
            for k, counters in sorted(value.items())]


def _identity(message: ContainerStats | ContainerState) -> dict[str, Any]:
    return {
        "_id": document_id(message),
        "timestamp": _date(message.timestamp),
        "timestamp_ns": Int64(message.timestamp),
        "seq": Int64(message.seq),
        "host": message.host,
        "id": message.id,
        "name": message.name,
        "image": message.image,
        "labels": [{"key": k, "value": v} for k, v in sorted(message.labels.items())],
    }


def to_document(sample: ContainerStats) -> dict[str, Any]:
    """The stored form of one sample."""
    document = _identity(sample)
    for name in _FIGURES:
        value = getattr(sample, name)
        document[name] = map_as_array(name, value) if name in MAP_KEYS else _bson(value)
    return document


def state_document(state: ContainerState) -> dict[str, Any]:
    """The stored form of one state message."""
    document = _identity(state)
    for name in _STATE_FIGURES:
        document[name] = _bson(getattr(state, name))
    for name in _STATE_TIMES:
        value = getattr(state, name)
        document[name] = None if value is None else _date(value)
        document[f"{name}_ns"] = None if value is None else Int64(value)
    return document


def engine_document(engine: EngineInfo) -> dict[str, Any]:
    """The stored form of one engine message."""
    document: dict[str, Any] = {
        "_id": document_id(engine),
        "timestamp": _date(engine.timestamp),
        "timestamp_ns": Int64(engine.timestamp),
        "seq": Int64(engine.seq),
        "host": engine.host,
    }
    for name in _ENGINE_FIGURES:
        document[name] = _bson(getattr(engine, name))
    return document


class WriteRejected(Exception):
    """The server refused a batch as a whole, not for one document: the write concern could
    not be met, or the indexes could not be created."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.code = code


def classify(exc: Exception) -> Failure:
    """Network trouble, a server that is not ready, or a retryable write error: retry.
    A document that cannot be encoded or stored (an integer beyond 64 bits, over the size
    limit) is the data's fault: split the batch to find it. Bad credentials and write-concern
    trouble concern every document alike: give the batch up."""
    if isinstance(exc, ConnectionFailure):  # also AutoReconnect, timeouts, selection timeout
        return Failure(True, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, PyMongoError) and exc.has_error_label("RetryableWriteError"):
        return Failure(True, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, WriteRejected):
        return Failure(False, f"{type(exc).__name__} (code {exc.code}): {exc}")
    if isinstance(exc, OperationFailure):
        return Failure(False, f"{type(exc).__name__} (code {exc.code}): {exc}",
                       split=exc.code not in _NOT_ABOUT_THE_DATA)
    if isinstance(exc, (InvalidDocument, OverflowError, ValueError)):
        # DocumentTooLarge is an InvalidDocument; OverflowError: an integer beyond 64 bits.
        return Failure(False, f"{type(exc).__name__}: {exc}", split=True)
    return Failure(False, repr(exc))


class MongoDBSink(DeliveringSink):
    name = "mongodb"
    options = (
        Option("uri", "connection string", default="mongodb://127.0.0.1:27017", secret=True),
        Option("database", "database", default="statspout"),
        Option("collection", "collection of the samples", default="stats"),
        Option("state-collection", "collection of the containers' state messages",
               default="states"),
        Option("engine-collection", "collection of the hosts' engine messages",
               default="engines"),
        Option("ttl", "delete documents this many seconds after their timestamp (a TTL "
               "index); 0 keeps them", default=0, type=cli.whole_number(0)),
        Option("timeout", "seconds to wait for the server on one write",
               default=10.0, type=cli.seconds(0.1)),
        *delivery_options(batch_size=1000),
    )

    def __init__(self, settings: SimpleNamespace) -> None:
        super().__init__(settings, classify)
        self._client: pymongo.MongoClient | None = None
        self._indexes_ready = False

    def open(self) -> None:
        timeout_ms = int(self.settings.timeout * 1000)
        # Connecting is lazy: a server that is down at start is an outage like any other.
        self._client = pymongo.MongoClient(
            self.settings.uri, serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms, socketTimeoutMS=timeout_ms, tz_aware=True,
        )
        database = self._client[self.settings.database]
        self._collection = database[self.settings.collection]
        self._states = database[getattr(self.settings, "state_collection", "states")]
        self._engines = database[getattr(self.settings, "engine_collection", "engines")]
        super().open()

    def close(self) -> None:
        super().close()
        if self._client is not None:
            self._client.close()

    def handle_state(self, state: ContainerState) -> None:
        self.deliver(state)

    def handle_engine(self, engine: EngineInfo) -> None:
        self.deliver(engine)

    def ensure_indexes(self) -> None:
        for collection, key in ((self._collection, "name"), (self._states, "name"),
                                (self._engines, "host")):
            collection.create_index([(key, pymongo.ASCENDING), ("timestamp", pymongo.ASCENDING)])
            if self.settings.ttl > 0:
                self._ensure_ttl(collection)

    def _ensure_ttl(self, collection: Collection) -> None:
        try:
            collection.create_index(
                "timestamp", name="timestamp_ttl", expireAfterSeconds=self.settings.ttl
            )
        except OperationFailure as exc:
            if exc.code not in _INDEX_CONFLICT:
                raise
            # An existing TTL index with another expiry: keep writing rather than lose
            # samples over retention, and say how to change it.
            log.error(
                "%s.%s: cannot set --mongodb.ttl %d, an index on timestamp exists with "
                "other options (drop index timestamp_ttl or use collMod): %s",
                self.settings.database, collection.name, self.settings.ttl, exc,
            )

    def write_batch(self, batch: list[Stored]) -> None:
        if not self._indexes_ready:
            try:
                self.ensure_indexes()
            except OperationFailure as exc:  # every part of a split would meet it again
                raise WriteRejected(f"creating the indexes: {exc}", exc.code) from exc
            self._indexes_ready = True
        stats = [to_document(m) for m in batch if isinstance(m, ContainerStats)]
        states = [state_document(m) for m in batch if isinstance(m, ContainerState)]
        engines = [engine_document(m) for m in batch if isinstance(m, EngineInfo)]
        rejected = 0
        first_error: dict[str, Any] | None = None
        for collection, documents in ((self._collection, stats), (self._states, states),
                                      (self._engines, engines)):
            if not documents:
                continue
            errors = _insert(collection, documents)
            rejected += len(errors)
            first_error = first_error or (errors[0] if errors else None)
        if first_error is not None:
            # Unordered: every other document of the batch was stored.
            raise PartialWrite(
                f"document rejected (code {first_error.get('code')}): "
                f"{first_error.get('errmsg')}", rejected_samples=rejected,
            )


def _insert(collection: Collection, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert unordered; the write errors of documents refused (a duplicate _id is a document
    an earlier, timed-out attempt already stored: not an error)."""
    try:
        collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        details = exc.details
        if details.get("writeConcernErrors"):
            first = details["writeConcernErrors"][0]
            raise WriteRejected(first.get("errmsg", ""), first.get("code")) from exc
        return [e for e in details.get("writeErrors", []) if e["code"] != _DUPLICATE_KEY]
    return []
