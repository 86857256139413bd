"""IDB: the example of the original statspout guide (a "repository" there), as a statspout sink.

IDB is an imaginary database; here it is a file of JSON lines, one record per sample, so the
example runs anywhere. Replace ``IDBClient`` with a real client library.

Data model: one record per sample with ``name``, ``timestamp`` (ns), ``cpu_usage`` (%),
``mem_usage`` (bytes), ``tx_bytes``, ``rx_bytes`` (bytes, cumulative) and ``state`` (the
container's ``state`` label, if any).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

from statspout.sinks.base import Option, Sink
from statspout.wire import ContainerStats


class IDBClient:
    """Stands in for the ``idbcli`` client library of the guide."""

    def __init__(self, address: str) -> None:
        self._file = open(address, "a", encoding="utf-8")

    def send(self, name: str, timestamp: int, data: dict) -> None:
        self._file.write(json.dumps({"name": name, "timestamp": timestamp, **data}) + "\n")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class IDBSink(Sink):
    name = "idb"  # --idb.address, STATSPOUT_IDB_ADDRESS
    options = (
        Option("address", "where IDB stores the stats (a file, in this example)",
               default="idb.jsonl"),
    )

    def __init__(self, settings: SimpleNamespace) -> None:
        super().__init__(settings)
        self._client: IDBClient | None = None

    def open(self) -> None:
        self._client = IDBClient(self.settings.address)

    def write(self, sample: ContainerStats) -> None:
        # An exception raised here is counted and logged by the runtime; the worker goes on.
        self._client.send(sample.name, sample.timestamp, {
            "cpu_usage": sample.cpu_percent,
            "mem_usage": sample.mem_usage,
            "tx_bytes": sample.tx_bytes,
            "rx_bytes": sample.rx_bytes,
            # Labels carry extra metadata.
            "state": sample.labels.get("state"),
        })

    def flush(self) -> None:
        self._client.flush()

    def close(self) -> None:
        self._client.close()
