"""Rows and host totals as lines of text: fitted to a terminal for the live view, in full for
``--once``, and as JSON for scripts. No terminal I/O here; the live view draws these lines.

Fitting: figures are never cut. The HOST and NAME columns take what the figures leave, cut with
an ellipsis; when even that is too narrow, the memory limit, then BLOCK I/O, then RESTARTS, then
NET I/O are left out, so that an 80-column terminal always shows whole numbers. STATUS and
RESTARTS (``docker ps``'s ``Up 5m (healthy)``, ``Exited (3) 2m ago``) are shown when a row has
a state message (wire 1.1 collectors); a container known only by its state shows ``--`` for
its figures.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from statspout import docker_format as fmt
from statspout.top.fleet import PAUSED, STOPPED, HostSeen, Row
from statspout.top.view import COLUMNS, HostLine

MARK_STALE, MARK_STOPPED, MARK_PAUSED = "!", "x", "p"
LEGEND = f"{MARK_STALE}:no samples {MARK_STOPPED}:stopped {MARK_PAUSED}:paused"
KEYS_HELP = "c m % i b p s t h n:sort r:reverse /:filter q:quit"
MIN_NAME_WIDTH = 6
GOOD_NAME_WIDTH = 16
MIN_HOST_WIDTH = 4
ELLIPSIS = "…"

# Table columns, left to right: (name, header, right-aligned). "mark" has no header.
_MARK, _HOST, _NAME, _CPU, _MEM, _MEMP, _NET, _BLOCK, _PIDS, _STATUS, _RESTARTS = range(11)
_HEADERS = ("", "HOST", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O",
            "PIDS", "STATUS", "RESTARTS")
_RIGHT = frozenset({_CPU, _MEM, _MEMP, _NET, _BLOCK, _PIDS, _RESTARTS})
_SORT_COLUMN_INDEX = {"host": _HOST, "name": _NAME, "cpu": _CPU, "mem": _MEM,
                      "mem-percent": _MEMP, "net": _NET, "block": _BLOCK, "pids": _PIDS,
                      "status": _STATUS, "restarts": _RESTARTS}


def mark(row: Row) -> str:
    if row.state == STOPPED:
        return MARK_STOPPED
    if row.stale:
        return MARK_STALE
    if row.state == PAUSED:
        return MARK_PAUSED
    return " "


def row_cells(row: Row, now_ns: int | None = None) -> list[str]:
    """The cells of a row; STATUS judged at ``now_ns`` (default: now)."""
    s, state = row.sample, row.status
    figures = [fmt.UNKNOWN] * 6 if s is None else [
        fmt.percent(s.cpu_percent), fmt.memory_usage(s.mem_usage, s.mem_limit),
        fmt.percent(s.mem_percent), fmt.io_pair(s.rx_bytes, s.tx_bytes),
        fmt.io_pair(s.blk_read_bytes, s.blk_write_bytes), str(s.pids)]
    status = [fmt.UNKNOWN, fmt.UNKNOWN] if state is None else [
        fmt.status(state, time.time_ns() if now_ns is None else now_ns),
        str(state.restart_count)]
    return [mark(row), row.host, row.name, *figures, *status]


def _with_status(rows: Sequence[Row]) -> bool:
    return any(row.status is not None for row in rows)


@dataclass(frozen=True)
class Layout:
    """Which columns are shown, how wide, and how far apart."""

    columns: tuple[int, ...]
    widths: dict[int, int]
    gap: int
    memory_limit: bool  # False: the MEM column shows the usage only

    @property
    def width(self) -> int:
        # The mark column is always followed by one space, whatever the gap.
        return sum(self.widths[c] for c in self.columns) + self.gap * (len(self.columns) - 2) + 1


def _usage_only(cell: str) -> str:
    return cell.split(" / ", 1)[0]


def plan(cells: Sequence[Sequence[str]], width: int | None, status: bool = False) -> Layout:
    """Fit the columns into ``width`` characters (None: no limit): whole columns with 2, then
    1 space between; then HOST and NAME cut, leaving out the memory limit, BLOCK I/O, RESTARTS
    and NET I/O in turn while NAME would be cut below GOOD_NAME_WIDTH. ``status``: with the
    STATUS and RESTARTS columns."""
    every = tuple(range(11 if status else 9))
    dropped = ((), (), (_BLOCK,), (_BLOCK, _RESTARTS), (_BLOCK, _RESTARTS, _NET))
    # (Without STATUS, leaving out RESTARTS changes nothing: one attempt is tried twice.)
    attempts = [(tuple(c for c in every if c not in leave_out), index == 0)
                for index, leave_out in enumerate(dropped)]
    natural = [_natural_widths(cells, columns, limit) for columns, limit in attempts]
    for gap in (2, 1):
        layout = Layout(attempts[0][0], natural[0], gap, True)
        if width is None or layout.width <= width:
            return layout
    assert width is not None
    fitted = []
    for (columns, memory_limit), widths in zip(attempts, natural, strict=True):
        layout = Layout(columns, widths, 1, memory_limit)
        spare = width - (layout.width - widths[_HOST] - widths[_NAME])
        # NAME first (up to GOOD_NAME_WIDTH), HOST what is left, then NAME the rest.
        host = min(widths[_HOST],
                   max(MIN_HOST_WIDTH, spare - min(widths[_NAME], GOOD_NAME_WIDTH)))
        fitted.append(Layout(columns, {**widths, _HOST: host, _NAME: spare - host}, 1,
                             memory_limit))
        if spare - host >= min(widths[_NAME], GOOD_NAME_WIDTH):
            return fitted[-1]
    usable = [layout for layout in fitted if layout.widths[_NAME] >= MIN_NAME_WIDTH]
    return usable[0] if usable else fitted[-1]  # the last may be wider: the terminal cuts it


def _natural_widths(cells: Sequence[Sequence[str]], columns: tuple[int, ...],
                    memory_limit: bool) -> dict[int, int]:
    widths = {c: max([len(_header(c, memory_limit))] + [len(r[c]) for r in cells])
              for c in columns}
    if not memory_limit:
        widths[_MEM] = max([len("MEM USAGE")] + [len(_usage_only(r[_MEM])) for r in cells])
    return widths


def _header(column: int, memory_limit: bool) -> str:
    return "MEM USAGE" if column == _MEM and not memory_limit else _HEADERS[column]


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + ELLIPSIS


def line(cells: Sequence[str], layout: Layout) -> str:
    parts = []
    for column in layout.columns:
        cell = cells[column]
        if column == _MEM and not layout.memory_limit:
            cell = _usage_only(cell)
        cell = _cut(cell, layout.widths[column])
        width = layout.widths[column]
        parts.append(cell.rjust(width) if column in _RIGHT else cell.ljust(width))
    return (parts[0] + " " + (" " * layout.gap).join(parts[1:])).rstrip()


def header(layout: Layout) -> str:
    return line([_header(c, layout.memory_limit) for c in range(len(_HEADERS))], layout)


def host_text(host: HostLine, width: int | None = None) -> str:
    """``HOST web-1  3 containers (1 !)  CPU 104.20%  MEM 1.5GiB  … PIDS 12  seen 0.4s ago``;
    NET and BLOCK are left out where they do not fit."""
    name = host.host if width is None else _cut(host.host, max(8, width // 4))
    count = f"{host.containers} ctr" + (f" ({host.stale} {MARK_STALE})" if host.stale else "")
    seen = f"seen {fmt.age(host.last_seen_s)} ago" + (" SILENT" if host.host_silent else "")
    head = [f"HOST {name}", count, f"CPU {fmt.percent(host.cpu_percent)}",
            f"MEM {fmt.binary_size(host.mem_usage)}"]
    optional = [f"NET {fmt.io_pair(host.rx_bytes, host.tx_bytes)}",
                f"BLOCK {fmt.io_pair(host.blk_read_bytes, host.blk_write_bytes)}"]
    tail = [f"PIDS {host.pids}", seen]
    if width is None:
        return "  ".join(head + optional + tail)
    for keep in (2, 1, 0):
        text = "  ".join(head + optional[:keep] + tail)
        if len(text) <= width:
            return text
    return _cut(text, width)


@dataclass(frozen=True)
class Screen:
    """What the live view shows, fitted to width × height: rich Text lines."""

    lines: list[Text]
    shown_rows: int  # how many container rows fit


def screen(
    rows: Sequence[Row],
    hosts: Sequence[HostLine],
    *,
    title: str,
    status: str,
    sort_column: str,
    width: int,
    height: int,
    offset: int = 0,
) -> Screen:
    """Title, host lines (at most a third of the height), the table from row ``offset``, and
    the status line at the bottom; every line at most ``width`` characters."""
    out = [Text(_cut(title, width), style="bold")]
    host_room = max(1, (height - 4) // 3)
    shown_hosts = hosts if len(hosts) <= host_room else hosts[: host_room - 1]
    for host in shown_hosts:
        out.append(Text(host_text(host, width), style="red" if host.host_silent else "cyan"))
    if len(shown_hosts) < len(hosts):
        out.append(Text(f"… {len(hosts) - len(shown_hosts)} more hosts (filter host=GLOB)",
                        style="cyan"))
    room = max(0, height - len(out) - 2)
    visible = rows[offset: offset + room]
    cells = [row_cells(r) for r in visible]
    layout = plan(cells, width, _with_status(visible))
    head = Text(header(layout).ljust(width)[:width], style="reverse")
    sorted_index = _SORT_COLUMN_INDEX[sort_column]
    if sorted_index in layout.columns:
        start = sum(layout.widths[c] + layout.gap for c in layout.columns
                    if c < sorted_index) + 1 - layout.gap
        head.stylize("bold underline", start, start + layout.widths[sorted_index])
    out.append(head)
    for row, row_cell in zip(visible, cells, strict=True):
        text = Text(line(row_cell, layout)[:width])
        if row.stale or row.state == STOPPED:
            text.stylize("dim")
            text.stylize("bold red", 0, 1)
        out.append(text)
    out.extend(Text("") for _ in range(room - len(visible)))
    out.append(Text(_cut(status, width), style="reverse"))
    return Screen(out, room)


def snapshot_text(rows: Sequence[Row], hosts: Sequence[HostLine]) -> str:
    """``--once``: every host line, then every row, in full, as plain text."""
    cells = [row_cells(r) for r in rows]
    layout = plan(cells, None, _with_status(rows))
    lines = [host_text(h) for h in hosts] + [header(layout)] + [line(c, layout) for c in cells]
    return "\n".join(lines) + "\n"


def snapshot_json(rows: Sequence[Row], hosts: Sequence[HostLine],
                  seen: dict[str, HostSeen]) -> dict[str, Any]:
    """``--once --json``: exact figures (bytes, %, counts) with units in the names."""
    return {
        "hosts": [{
            "host": h.host, "containers": h.containers, "stale_containers": h.stale,
            "cpu_percent": round(h.cpu_percent, 2), "mem_usage_bytes": h.mem_usage,
            "rx_bytes": h.rx_bytes, "tx_bytes": h.tx_bytes,
            "blk_read_bytes": h.blk_read_bytes, "blk_write_bytes": h.blk_write_bytes,
            "pids": h.pids, "last_seen_s": round(h.last_seen_s, 3),
            "interval_s": seen[h.host].interval_s, "silent": h.host_silent,
        } for h in hosts],
        "containers": [_container_json(r) for r in rows],
    }


_SAMPLE_JSON = (  # JSON name, sample field
    ("timestamp_ns", "timestamp"), ("cpu_percent", "cpu_percent"),
    ("mem_usage_bytes", "mem_usage"), ("mem_limit_bytes", "mem_limit"),
    ("mem_percent", "mem_percent"), ("rx_bytes", "rx_bytes"), ("tx_bytes", "tx_bytes"),
    ("blk_read_bytes", "blk_read_bytes"), ("blk_write_bytes", "blk_write_bytes"),
    ("pids", "pids"),
)
_STATE_JSON = ("status", "health", "health_failing_streak", "restart_count", "exit_code",
               "oom_killed", "started_at", "finished_at")


def _container_json(r: Row) -> dict[str, Any]:
    """A row for --once --json: null figures without a sample, null state fields without a
    state message; started_at/finished_at in ns since the epoch."""
    known = r.message
    return {
        "host": known.host, "name": known.name, "id": known.id, "image": known.image,
        "labels": known.labels, "state": r.state, "stale": r.stale, "lag_s": round(r.lag_s, 3),
        **{name: None if r.sample is None else getattr(r.sample, field)
           for name, field in _SAMPLE_JSON},
        **{name: None if r.status is None else getattr(r.status, name) for name in _STATE_JSON},
    }


def sort_title(sort_column: str, reverse: bool) -> str:
    column = COLUMNS[sort_column]
    descending = column.descending != reverse
    return f"{column.header} {'↓' if descending else '↑'}"
