"""The view's feed: subscribe to a route of the router exactly as a sink worker does (the
same socket from ``bus.py``, the same ``SinkWorker`` decoding, counting malformed messages and
gaps) and keep the fleet table current, in a thread of its own."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import SimpleNamespace

import zmq

from statspout import bus
from statspout.security import ClientKeys
from statspout.sinks.base import Sink
from statspout.sinks.runtime import SinkWorker, WorkerCounts
from statspout.top.fleet import FleetTable
from statspout.wire import ContainerEvent, ContainerState, ContainerStats


class FleetSink(Sink):
    """A sink whose store is the fleet table the view reads."""

    name = "top"

    def __init__(self, table: FleetTable) -> None:
        super().__init__(SimpleNamespace())
        self.table = table

    def write(self, sample: ContainerStats) -> None:
        self.table.put(sample)

    def handle_event(self, event: ContainerEvent) -> None:
        self.table.handle_event(event)

    def handle_state(self, state: ContainerState) -> None:
        self.table.put_state(state)

    def counters(self) -> Mapping[str, int]:
        counts = self.table.counts
        return {"containers": len(self.table), "table_full": counts.table_full,
                "forgotten": counts.forgotten}


class Subscription:
    """Runs the worker in a daemon thread from ``start`` until ``stop``."""

    def __init__(
        self,
        table: FleetTable,
        endpoint: str,
        route: str = bus.DEFAULT_ROUTE,
        hwm: int = bus.DEFAULT_HWM,
        keys: ClientKeys | None = None,
        report_interval: float = 60.0,
    ) -> None:
        self._context = zmq.Context()
        self._socket = bus.sink_subscriber(self._context, endpoint, route, hwm, keys)
        self._worker = SinkWorker(FleetSink(table), self._socket, report_interval=report_interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._worker.run, args=(self._stop,),
                                        name="statspout-top-subscription", daemon=True)

    @property
    def counts(self) -> WorkerCounts:
        """Received, malformed, gaps: read without a lock, as figures to show."""
        return self._worker.counts

    def start(self) -> Subscription:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()
        self._context.term()
