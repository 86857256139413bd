"""The collector's batches: the messages of one cycle published as one payload (wire 1.2).

Messages are gathered in seq order with the container entry each is about, and published as
one ``kind: "batch"`` payload when the collector's loop says the burst is over (``flush``), or
sooner when the batch would exceed ``max_items`` messages or ``max_bytes`` bytes. A batch of
one message is published as that message alone, so ``max_items`` 1 is the wire of 1.1: what a
router of 1.1 reads (it counts a batch as malformed, of an unknown kind).
"""

from __future__ import annotations

import time
from typing import Protocol

import msgpack

from statspout import wire
from statspout.bus import PublishCounts

# A batch is published before it grows past this: under the routers' and sinks' default
# --max-message-bytes (1 MiB), with room for the envelope.
DEFAULT_BATCH_BYTES = 512 * 1024
DEFAULT_BATCH_ITEMS = 1000
# What a batch costs besides its items and entries: the envelope's keys, seq, host, timestamp.
_ENVELOPE_BYTES = 400
# A msgpack binary's header (bin 32), and an item's index, at most.
_PER_ITEM_BYTES = 5 + 9


# With batches, the collector's queue to the router (--hwm, in messages) holds --hwm divided by
# --batch-items batches, but at least this many: a minute of 1 s cycles.
MIN_QUEUED_BATCHES = 60


def queued_payloads(hwm_messages: int, batch_items: int) -> int:
    """The high-water mark of the collector's socket, in payloads, for ``--hwm`` messages:
    ZeroMQ counts a batch as one message, and a queue of ``--hwm`` batches would hold up to
    ``--batch-items`` times the messages (and memory) that ``--hwm`` says."""
    if batch_items <= 1:
        return hwm_messages
    return max(MIN_QUEUED_BATCHES, -(-hwm_messages // batch_items))


class Publisher(Protocol):
    """Where payloads go (bus.CollectorPublisher): never blocks, counts what it drops."""

    counts: PublishCounts

    def publish(self, payload: bytes, messages: int = 1) -> bool: ...


class BatchingPublisher:
    """Gathers messages into batches for a Publisher; every message goes out by ``flush``."""

    def __init__(self, publisher: Publisher, host: str, *,
                 max_items: int = DEFAULT_BATCH_ITEMS,
                 max_bytes: int = DEFAULT_BATCH_BYTES) -> None:
        if not 1 <= max_items <= wire.MAX_BATCH_ITEMS:
            raise ValueError(f"max_items must be 1 … {wire.MAX_BATCH_ITEMS}")
        self._publisher = publisher
        self._host = host
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._items: list[bytes] = []
        self._indexes: list[int] = []
        self._entries: list[list[object]] = []
        # (id, name, image) → index in _entries; the labels are compared on a hit.
        self._entry_of: dict[tuple[str, str, str], int] = {}
        self._bytes = 0
        self._first_seq = 0
        self._newest = 0  # the newest timestamp of the items
        self.started = 0.0  # time.monotonic() when the gathered batch got its first item

    def __len__(self) -> int:
        return len(self._items)

    def add(self, message: wire.Message) -> None:
        """Gather one message (published at once when batches are off)."""
        identity = (None if isinstance(message, wire.EngineInfo) else wire.ContainerIdentity(
            message.host, message.id, message.name, message.image, message.labels))
        self.add_encoded(wire.encode(message), message.seq, message.timestamp, identity)

    def add_encoded(self, payload: bytes, seq: int, timestamp: int,
                    identity: wire.ContainerIdentity | None) -> None:
        """Gather one message already encoded (``payload``), with its seq, timestamp and the
        container it is about (None: the engine's message)."""
        if self._max_items == 1:
            self._publisher.publish(payload)
            return
        if self._items and seq != self._first_seq + len(self._items):
            self.flush()  # a batch's items are numbered without holes
        index, entry_bytes = self._entry_index(identity)
        cost = len(payload) + _PER_ITEM_BYTES + entry_bytes
        if self._items and self._bytes + cost > self._max_bytes:
            self.flush()
            index, entry_bytes = self._entry_index(identity)
            cost = len(payload) + _PER_ITEM_BYTES + entry_bytes
        if not self._items:
            self.started = time.monotonic()
            self._first_seq = seq
            self._bytes = _ENVELOPE_BYTES
            self._newest = timestamp
        self._items.append(payload)
        self._indexes.append(index)
        self._bytes += cost
        self._newest = max(self._newest, timestamp)
        if len(self._items) >= self._max_items:
            self.flush()

    def _entry_index(self, identity: wire.ContainerIdentity | None) -> tuple[int, int]:
        """The message's container entry (added when new: then its size too)."""
        if identity is None:
            return wire.NO_CONTAINER, 0
        key = (identity.id, identity.name, identity.image)
        index = self._entry_of.get(key)
        if index is not None and self._entries[index][3] == identity.labels:
            return index, 0
        entry: list[object] = [identity.id, identity.name, identity.image, identity.labels]
        self._entries.append(entry)
        index = self._entry_of[key] = len(self._entries) - 1
        return index, len(msgpack.packb(entry, use_bin_type=True))

    def flush(self) -> None:
        """Publish what is gathered: one batch, or the message alone when it is one."""
        items = self._items
        if not items:
            return
        if len(items) == 1:
            self._publisher.publish(items[0])
        else:
            self._publisher.publish(wire.encode_batch(wire.Batch(
                seq=self._first_seq, host=self._host, timestamp=self._newest, items=items,
                containers=self._entries, item_containers=self._indexes)), len(items))
        self._items, self._indexes, self._entries = [], [], []
        self._entry_of = {}
        self._bytes = 0
