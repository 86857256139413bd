"""Figures written as ``docker stats`` and ``docker ps`` write them, so that a reader compares them
at a glance (shared by the stdout sink, the REST sink's live page and ``statspout-top``).

Docker's CLI formats with github.com/docker/go-units: memory in binary units with 4 significant
digits (``BytesSize``: ``12.3MiB / 1GiB``), network and block I/O in decimal units with 3
(``HumanSizeWithPrecision(x, 3)``: ``1.23kB / 0B``), percentages with two decimals, and ``--``
where a figure is unknown. Python's ``%g`` rounds and trims exactly as Go's does here.
"""

from __future__ import annotations

from statspout.wire import ContainerState

BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
UNKNOWN = "--"


def _scaled(size: float, base: float, units: tuple[str, ...]) -> tuple[float, str]:
    index = 0
    while size >= base and index < len(units) - 1:
        size /= base
        index += 1
    return size, units[index]


def binary_size(size: int) -> str:
    """Memory: ``52428800`` → ``50MiB`` (go-units ``BytesSize``)."""
    value, unit = _scaled(float(size), 1024.0, BINARY_UNITS)
    return f"{value:.4g}{unit}"


def decimal_size(size: int) -> str:
    """Network and block I/O: ``3400`` → ``3.4kB`` (go-units ``HumanSizeWithPrecision(x, 3)``)."""
    value, unit = _scaled(float(size), 1000.0, DECIMAL_UNITS)
    return f"{value:.3g}{unit}"


def percent(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:.2f}%"


def memory_usage(usage: int, limit: int) -> str:
    """The MEM USAGE / LIMIT cell."""
    return f"{binary_size(usage)} / {binary_size(limit)}"


def io_pair(first: int, second: int) -> str:
    """The NET I/O (received / sent) and BLOCK I/O (read / written) cells."""
    return f"{decimal_size(first)} / {decimal_size(second)}"


def age(seconds: float | None) -> str:
    """How long ago something was seen: ``0.4s``, ``12s``, ``3m05s``, ``2h01m``."""
    if seconds is None:
        return UNKNOWN
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def duration(seconds: float) -> str:
    """A compact ``docker ps`` duration: ``12s``, ``5m``, ``3h``, ``2d``."""
    whole = max(int(seconds), 0)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if whole >= size:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def status(state: ContainerState, now_ns: int) -> str:
    """The STATUS cell, as ``docker ps`` writes it with shorter durations: ``Up 5m (healthy)``,
    ``Up 2h (Paused)``, ``Exited (3) 2m ago``, ``Restarting (3) 4s ago``, ``Created``."""
    def since(moment_ns: int | None) -> str:
        return UNKNOWN if moment_ns is None else duration((now_ns - moment_ns) / 1e9)

    if state.status in ("running", "paused"):
        text = f"Up {since(state.started_at)}"
        if state.status == "paused":
            return text + " (Paused)"
        return text + (f" ({state.health})" if state.health else "")
    code = UNKNOWN if state.exit_code is None else state.exit_code
    if state.status == "restarting":
        return f"Restarting ({code}) {since(state.finished_at)} ago"
    if state.status == "exited":
        return f"Exited ({code}) {since(state.finished_at)} ago"
    if state.status == "removing":
        return "Removal In Progress"
    return state.status.capitalize()  # Created, Dead
