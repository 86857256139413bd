"""What the screen shows of a fleet snapshot: which rows (filter), in which order (sort), and
the totals line of every host. Pure functions over ``fleet.Row``: no terminal here.

Filters use the router's selector syntax (``statspout/selectors.py``), so that what an operator
writes in ``--include`` works here unchanged: ``host=GLOB``, ``name=GLOB``, ``image=GLOB``,
``label=KEY``, ``label=KEY=VALUE``, ``label=KEY!=VALUE``. Words of a filter are selectors; a row
shows when any plain one matches (or there is none) and no ``-``-prefixed one does, as the
router's ``--include``/``--exclude``. A bare word (no ``=``) is short for ``name=*WORD*``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from statspout.selectors import BadSelector, SelectorFilter
from statspout.top.fleet import RUNNING, HostSeen, Row
from statspout.wire import ContainerStats

__all__ = [
    "COLUMNS",
    "BadSelector",
    "Column",
    "HostLine",
    "Row",
    "filter_rows",
    "host_lines",
    "parse_filter",
    "sort_rows",
]


@dataclass(frozen=True)
class Column:
    """A sortable column: its key on the keyboard, its header, what it sorts by."""

    name: str
    key: str
    header: str
    sort_value: Callable[[Row], Any]  # a number or a string, per column
    descending: bool  # the natural order: biggest first for figures, A→Z for names


def _figure(read: Callable[[ContainerStats], float | None]) -> Callable[[Row], float]:
    """A sample's figure to sort by; -1 when unknown (no sample, or not measured yet)."""
    def value(row: Row) -> float:
        figure = None if row.sample is None else read(row.sample)
        return -1.0 if figure is None else figure
    return value


def _status(row: Row) -> str:
    return "" if row.status is None else row.status.status


def _restarts(row: Row) -> int:
    return -1 if row.status is None else row.status.restart_count


COLUMNS: dict[str, Column] = {column.name: column for column in (
    Column("host", "h", "HOST", lambda r: r.host, False),
    Column("name", "n", "NAME", lambda r: r.name, False),
    Column("cpu", "c", "CPU %", _figure(lambda s: s.cpu_percent), True),
    Column("mem", "m", "MEM USAGE / LIMIT", _figure(lambda s: s.mem_usage), True),
    Column("mem-percent", "%", "MEM %", _figure(lambda s: s.mem_percent), True),
    Column("net", "i", "NET I/O", _figure(lambda s: s.rx_bytes + s.tx_bytes), True),
    Column("block", "b", "BLOCK I/O",
           _figure(lambda s: s.blk_read_bytes + s.blk_write_bytes), True),
    Column("pids", "p", "PIDS", _figure(lambda s: s.pids), True),
    Column("status", "s", "STATUS", _status, False),
    Column("restarts", "t", "RESTARTS", _restarts, True),
)}
COLUMN_OF_KEY = {column.key: column for column in COLUMNS.values()}


def sort_rows(rows: Iterable[Row], column: str, reverse: bool = False) -> list[Row]:
    """Rows in the column's natural order (``reverse`` flips it); ties by host, then name."""
    chosen = COLUMNS[column]
    ordered = sorted(rows, key=lambda r: (r.host, r.name))
    return sorted(ordered, key=chosen.sort_value, reverse=chosen.descending != reverse)


def parse_filter(text: str) -> SelectorFilter:
    """A filter as typed; raises BadSelector naming the word that is not a selector."""
    include: list[str] = []
    exclude: list[str] = []
    for word in text.split():
        target = exclude if word.startswith("-") else include
        word = word.removeprefix("-")
        target.append(word if "=" in word else f"name=*{word}*")
    return SelectorFilter.parse(include, exclude)


def filter_rows(rows: Iterable[Row], selectors: SelectorFilter) -> list[Row]:
    return [row for row in rows if selectors.passes(row.message)]


@dataclass(frozen=True)
class HostLine:
    """The totals of one host over its shown containers that run and report."""

    host: str
    containers: int
    stale: int  # of them, whose samples stopped coming (or that stopped)
    cpu_percent: float
    mem_usage: int
    rx_bytes: int
    tx_bytes: int
    blk_read_bytes: int
    blk_write_bytes: int
    pids: int
    last_seen_s: float
    host_silent: bool


def host_lines(rows: Iterable[Row], hosts: dict[str, HostSeen]) -> list[HostLine]:
    """One line per host that has a row among ``rows``, by host name."""
    by_host: dict[str, list[Row]] = {}
    for row in rows:
        by_host.setdefault(row.host, []).append(row)
    lines = []
    for name in sorted(by_host):
        mine = by_host[name]
        live = [r.sample for r in mine
                if r.state == RUNNING and not r.stale and r.sample is not None]
        seen = hosts[name]
        lines.append(HostLine(
            host=name,
            containers=len(mine),
            stale=len(mine) - len(live),
            cpu_percent=sum(s.cpu_percent or 0.0 for s in live),
            mem_usage=sum(s.mem_usage for s in live),
            rx_bytes=sum(s.rx_bytes for s in live),
            tx_bytes=sum(s.tx_bytes for s in live),
            blk_read_bytes=sum(s.blk_read_bytes for s in live),
            blk_write_bytes=sum(s.blk_write_bytes for s in live),
            pids=sum(s.pids for s in live),
            last_seen_s=seen.last_seen_s,
            host_silent=seen.stale,
        ))
    return lines
