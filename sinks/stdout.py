"""The stdout sink: one line per sample, and per change of a container's state, human-readable or
JSON.

Data model (docs/sinks/stdout.md has every part):
- ``line`` (default): ``[host/name] 2026-11-28T15:40:01.123456Z CPU: 12.50%, MEM: 50MiB /
  1.575GiB (3.10%), NET I/O: 3.4kB / 1.2kB, BLOCK I/O: 8.59GB / 4.1kB, PIDS: 3`` — the figures
  as ``docker stats`` prints them (statspout/docker_format.py: memory in binary units, network
  received / sent and block I/O read / written in decimal units, ``--`` for a figure not known
  yet). Events print as ``[host/name] TIME EVENT: stop`` (``EVENT: rename from OLD``). A state
  message prints only when the container's status, health, restart count, exit code or OOM
  flag changed since the last one printed: ``[host/name] TIME STATE: exited (exit 3, restarts
  2, oom no, health unhealthy)``; an engine message only when its figures changed: ``[host] TIME
  ENGINE: docker 24.0.7, running 3, paused 0, stopped 2, images 7, cpus 2, memory 15.5GiB``.
  The last printed state of at most ``MAX_REMEMBERED`` containers and hosts is remembered; the
  oldest beyond are forgotten (counted in ``forgotten_states``: their next state prints again).
- ``json``: one JSON object per line with every wire field (docs/wire-schema.md) of every
  message, events, states (every one, repeats included) and engines too.

Delivery: a line counts as delivered when written to the process's stdout. Lines are held and
written together at each flush (about once a second, at shutdown, and whenever
``PENDING_LINES`` are held), right before the worker checkpoints the route position: a sink
killed between the two writes those lines again after its restart (docs/reliability.md).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Hashable, Mapping
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import TextIO

from statspout import docker_format as fmt
from statspout.sinks.base import Option, Sink
from statspout.wire import ContainerEvent, ContainerState, ContainerStats, EngineInfo

# Lines held between flushes at most; beyond, they are written out early.
PENDING_LINES = 10_000
# Containers and hosts whose last printed state is remembered, to print only changes.
MAX_REMEMBERED = 100_000


def format_time(timestamp_ns: int) -> str:
    seconds, nanoseconds = divmod(timestamp_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{nanoseconds // 1000:06d}Z"


def format_line(sample: ContainerStats) -> str:
    return (
        f"[{sample.host}/{sample.name}] {format_time(sample.timestamp)} "
        f"CPU: {fmt.percent(sample.cpu_percent)}, "
        f"MEM: {fmt.memory_usage(sample.mem_usage, sample.mem_limit)} "
        f"({fmt.percent(sample.mem_percent)}), "
        f"NET I/O: {fmt.io_pair(sample.rx_bytes, sample.tx_bytes)}, "
        f"BLOCK I/O: {fmt.io_pair(sample.blk_read_bytes, sample.blk_write_bytes)}, "
        f"PIDS: {sample.pids}"
    )


def format_event_line(event: ContainerEvent) -> str:
    detail = f" from {event.old_name}" if event.action == "rename" else ""
    return (f"[{event.host}/{event.name}] {format_time(event.timestamp)} "
            f"EVENT: {event.action}{detail}")


def state_change(state: ContainerState) -> tuple[object, ...]:
    """What a state line shows: a line is printed when this changes."""
    return (state.name, state.status, state.health, state.restart_count, state.exit_code,
            state.oom_killed)


def format_state_line(state: ContainerState) -> str:
    parts = [] if state.exit_code is None else [f"exit {state.exit_code}"]
    parts += [f"restarts {state.restart_count}", f"oom {'yes' if state.oom_killed else 'no'}"]
    if state.health is not None:
        parts.append(f"health {state.health}")
    return (f"[{state.host}/{state.name}] {format_time(state.timestamp)} "
            f"STATE: {state.status} ({', '.join(parts)})")


def engine_change(engine: EngineInfo) -> tuple[object, ...]:
    return (engine.engine, engine.server_version, engine.containers_running,
            engine.containers_paused, engine.containers_stopped, engine.images, engine.cpus,
            engine.memory_total)


def format_engine_line(engine: EngineInfo) -> str:
    return (f"[{engine.host}] {format_time(engine.timestamp)} ENGINE: {engine.engine} "
            f"{engine.server_version}, running {engine.containers_running}, paused "
            f"{engine.containers_paused}, stopped {engine.containers_stopped}, images "
            f"{engine.images}, cpus {engine.cpus}, memory {fmt.binary_size(engine.memory_total)}")


class LastPrinted:
    """What was last printed for each container or host, to print only changes; bounded."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self._limit = limit
        self._last: dict[Hashable, tuple[object, ...]] = {}
        self.forgotten = 0

    def changed(self, key: Hashable, shown: tuple[object, ...]) -> bool:
        """True (and remembered) when ``shown`` differs from what was printed for ``key``."""
        if self._last.get(key) == shown:
            return False
        self._last.pop(key, None)  # re-inserted last: the dict's order is the age
        self._last[key] = shown
        if len(self._last) > self._limit:
            del self._last[next(iter(self._last))]
            self.forgotten += 1
        return True

    def forget(self, key: Hashable) -> None:
        self._last.pop(key, None)


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
        self._printed = LastPrinted()

    def write(self, sample: ContainerStats) -> None:
        self._emit(sample.to_dict() if self._json else format_line(sample))

    def handle_event(self, event: ContainerEvent) -> None:
        if event.action == "destroy":
            self._printed.forget((event.host, event.id))
        self._emit(event.to_dict() if self._json else format_event_line(event))

    def handle_state(self, state: ContainerState) -> None:
        if self._json:
            self._emit(state.to_dict())
        elif self._printed.changed((state.host, state.id), state_change(state)):
            self._emit(format_state_line(state))

    def handle_engine(self, engine: EngineInfo) -> None:
        if self._json:
            self._emit(engine.to_dict())
        elif self._printed.changed(engine.host, engine_change(engine)):
            self._emit(format_engine_line(engine))

    def counters(self) -> Mapping[str, int]:
        return {"forgotten_states": self._printed.forgotten}

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
