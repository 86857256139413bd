"""The MongoDB sink: one document per sample, batched with unordered ``insert_many``.

Data model (docs/sinks/mongodb.md has the full table)::

    {_id: "<host>/<id>/<timestamp ns>",       # deterministic: a retried insert never duplicates
     timestamp: Date (UTC, ms), timestamp_ns: Int64 (the exact sample time),
     seq, host, id, name, image,
     labels: [{key: "com.docker.compose.project", value: "shop"}, ...],   # sorted by key
     cpu_percent, cpu_usage_ns, ..., pids}     # every wire figure, by its wire name

Labels are an array of ``{key, value}`` documents rather than a sub-document keyed by label:
label keys routinely contain dots (``com.docker.compose.project``) and may start with ``$``,
which field names cannot carry faithfully (dots are path separators). Query a label with
``{"labels": {"$elemMatch": {"key": "com.docker.compose.project", "value": "shop"}}}``.
Integers are stored as Int64, the percentages as doubles (null before a container's second
sample / without a memory limit). Indexes on (name, timestamp) and, with ``--mongodb.ttl``, a
TTL index on timestamp are created before the first write. Events change nothing: documents are
history, and there is nothing to forget.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pymongo
from bson import Int64
from bson.errors import InvalidDocument
from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure, PyMongoError

from statspout import cli
from statspout.sinks.base import Option
from statspout.sinks.delivery import DeliveringSink, Failure, PartialWrite, delivery_options
from statspout.wire import STATS_FIELDS, ContainerStats

log = logging.getLogger("statspout.sink.mongodb")

_DUPLICATE_KEY = 11000
_INDEX_CONFLICT = (85, 86)  # IndexOptionsConflict, IndexKeySpecsConflict
# Refusals of the client, not of a document: every part of a split batch would meet them.
_NOT_ABOUT_THE_DATA = (13, 18, 8000)  # Unauthorized, AuthenticationFailed, AtlasError
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Identity fields written under their own names; every other wire field is a figure.
_FIGURES = tuple(
    spec.name for spec in STATS_FIELDS
    if spec.name not in ("v", "kind", "seq", "host", "id", "name", "image", "labels", "timestamp")
)


def document_id(sample: ContainerStats) -> str:
    return f"{sample.host}/{sample.id}/{sample.timestamp}"


def to_document(sample: ContainerStats) -> dict[str, Any]:
    """The stored form of one sample."""
    document: dict[str, Any] = {
        "_id": document_id(sample),
        "timestamp": _EPOCH + timedelta(microseconds=sample.timestamp // 1000),
        "timestamp_ns": Int64(sample.timestamp),
        "seq": Int64(sample.seq),
        "host": sample.host,
        "id": sample.id,
        "name": sample.name,
        "image": sample.image,
        "labels": [{"key": k, "value": v} for k, v in sorted(sample.labels.items())],
    }
    for name in _FIGURES:
        value = getattr(sample, name)
        # Int64 always, so that a field has one BSON type whatever its size; the wire's checks
        # keep every integer below 2^63, so none needs capping here.
        document[name] = Int64(value) if type(value) is int else value
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
        Option("collection", "collection", default="stats"),
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
        self._collection = self._client[self.settings.database][self.settings.collection]
        super().open()

    def close(self) -> None:
        super().close()
        if self._client is not None:
            self._client.close()

    def ensure_indexes(self) -> None:
        self._collection.create_index(
            [("name", pymongo.ASCENDING), ("timestamp", pymongo.ASCENDING)]
        )
        if self.settings.ttl > 0:
            try:
                self._collection.create_index(
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
                    self.settings.database, self.settings.collection, self.settings.ttl, exc,
                )

    def write_batch(self, batch: list[ContainerStats]) -> None:
        if not self._indexes_ready:
            try:
                self.ensure_indexes()
            except OperationFailure as exc:  # every part of a split would meet it again
                raise WriteRejected(f"creating the indexes: {exc}", exc.code) from exc
            self._indexes_ready = True
        try:
            self._collection.insert_many([to_document(s) for s in batch], ordered=False)
        except BulkWriteError as exc:
            # A duplicate _id is a sample an earlier, timed-out attempt already stored.
            details = exc.details
            if details.get("writeConcernErrors"):
                first = details["writeConcernErrors"][0]
                raise WriteRejected(first.get("errmsg", ""), first.get("code")) from exc
            errors = [e for e in details.get("writeErrors", []) if e["code"] != _DUPLICATE_KEY]
            if errors:
                # Unordered: every other document of the batch was stored.
                first = errors[0]
                raise PartialWrite(
                    f"document rejected (code {first.get('code')}): {first.get('errmsg')}",
                    rejected_samples=len(errors),
                ) from exc
