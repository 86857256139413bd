"""The stdout sink: one line per sample, human-readable or JSON.

Data model:
- ``line`` (default): ``[name] 2026-11-28T15:40:01.123456Z CPU: 12.50%, MEM: 3.10% [52428800 B]
  Tx/Rx: 1200/3400`` — CPU and memory in percent (``CPU: -`` before the container's second
  sample), memory usage in bytes, network totals in bytes. Events print as
  ``[name] TIME EVENT: stop`` (``EVENT: rename from OLD`` for a rename).
- ``json``: one JSON object per line with every wire field (docs/wire-schema.md), events too.

Delivery: a line counts as delivered when written to the process's stdout. Lines are held and
written together at each flush (about once a second, at shutdown, and whenever
``PENDING_LINES`` are held), right before the worker checkpoints the route position: a sink
killed between the two writes those lines again after its restart (docs/reliability.md).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import TextIO

from statspout.sinks.base import Option, Sink
from statspout.wire import ContainerEvent, ContainerStats

# Lines held between flushes at most; beyond, they are written out early.
PENDING_LINES = 10_000


def format_time(timestamp_ns: int) -> str:
    seconds, nanoseconds = divmod(timestamp_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{nanoseconds // 1000:06d}Z"


def format_line(sample: ContainerStats) -> str:
    cpu = "-" if sample.cpu_percent is None else f"{sample.cpu_percent:.2f}%"
    mem = "-" if sample.mem_percent is None else f"{sample.mem_percent:.2f}%"
    return (
        f"[{sample.name}] {format_time(sample.timestamp)} CPU: {cpu}, MEM: {mem} "
        f"[{sample.mem_usage} B] Tx/Rx: {sample.tx_bytes}/{sample.rx_bytes}"
    )


def format_event_line(event: ContainerEvent) -> str:
    detail = f" from {event.old_name}" if event.action == "rename" else ""
    return f"[{event.name}] {format_time(event.timestamp)} EVENT: {event.action}{detail}"


class StdoutSink(Sink):
    name = "stdout"
    options = (
        Option("format", "line: one human-readable line per sample; json: JSON lines",
               default="line", choices=("line", "json")),
    )

    def __init__(self, settings: SimpleNamespace, stream: TextIO | None = None) -> None:
        super().__init__(settings)
        self._stream = stream or sys.stdout
        self._json = settings.format == "json"
        self._pending: list[str] = []

    def write(self, sample: ContainerStats) -> None:
        self._emit(sample.to_dict() if self._json else format_line(sample))

    def handle_event(self, event: ContainerEvent) -> None:
        self._emit(event.to_dict() if self._json else format_event_line(event))

    def _emit(self, record: dict | str) -> None:
        text = json.dumps(record, ensure_ascii=False) if isinstance(record, dict) else record
        self._pending.append(text + "\n")
        if len(self._pending) >= PENDING_LINES:
            self._write_pending()

    def flush(self) -> None:
        self._write_pending()
        self._stream.flush()

    def _write_pending(self) -> None:
        self._stream.write("".join(self._pending))
        self._pending.clear()
