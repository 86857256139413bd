"""The kernel's files as text: reading one whole, and parsing the formats the cgroup source reads.

Pure functions over a file's text (tested on recorded contents), plus ``read_text``, which opens,
reads and closes a file at once, and ``HeldFiles``, which keeps one container's files open and
reads each with one ``pread`` from offset 0.
"""

from __future__ import annotations

import errno
import os
import threading

# A file that went away under us: the container stopped (its cgroup was removed, ENODEV on a
# cgroup file already open; ESRCH/ENOENT for the /proc entry of a process that ended).
VANISHED = frozenset({errno.ENOENT, errno.ESRCH, errno.ENODEV})
# v1 reports "no limit" as a page-rounded 2^63 − 1; anything this large means unlimited.
_V1_UNLIMITED = 1 << 62


_READ_SIZE = 65536


def read_text(path: str) -> str:
    """The whole file, opened, read and closed at once: no descriptor outlives a sample."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunk = os.read(fd, _READ_SIZE)
        # A short read is the end for a regular file and for the kernel's seq_file-backed
        # cgroup and /proc files (they fill the buffer while there is more): that spares one
        # read call per file, a sixth of a sample's cost.
        if len(chunk) < _READ_SIZE:
            return chunk.decode("ascii", errors="replace")
        chunks = [chunk]
        while chunk := os.read(fd, _READ_SIZE):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii", errors="replace")


def read_open(fd: int) -> str:
    """The whole file behind an open descriptor, read again from its start: one ``pread`` for
    a file that fits in one read (the kernel's seq_file files start over at offset 0)."""
    chunk = os.pread(fd, _READ_SIZE, 0)
    if len(chunk) < _READ_SIZE:
        return chunk.decode("ascii", errors="replace")
    chunks = [chunk]
    offset = len(chunk)
    while chunk := os.pread(fd, _READ_SIZE, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks).decode("ascii", errors="replace")


class HeldFiles:
    """One container's cgroup files, each opened at its first read and kept open until
    ``close``: a read is then one ``pread`` instead of open, read and close (a sixth of the
    syscall time). At most one descriptor per path read.

    Only for cgroup files: the kernel ends an open one with ENODEV when the cgroup is removed
    (the container stopped), so a held descriptor never reads a container that is gone. Not
    for ``/proc/<pid>/net/dev``, whose open descriptor keeps its network namespace alive and
    readable after the process ended. After ``close`` (the container was forgotten while a
    pool thread read it), each read opens, reads and closes, as ``read_text``."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()  # a close from the loop thread waits for a read
        self._closed = False

    def read(self, path: str) -> str:
        with self._lock:
            if self._closed:
                return read_text(path)
            fd = self._fds.get(path)
            if fd is None:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                self._fds[path] = fd
            return read_open(fd)

    @property
    def open_count(self) -> int:
        return len(self._fds)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


def parse_proc_cgroup(text: str) -> list[tuple[tuple[str, ...], str]]:
    """``/proc/<pid>/cgroup`` → [(controllers, path)]; the unified hierarchy has no controllers
    (``0::/path``), a named v1 hierarchy is ``("name=systemd",)``."""
    entries = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers = tuple(c for c in parts[1].split(",") if c)
        entries.append((controllers, parts[2]))
    return entries


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat) → {key: value}."""
    words = text.split()
    if len(words) % 2 == 0:
        try:  # every value an integer, as the kernel writes them: in C, five times faster
            return dict(zip(words[::2], map(int, words[1::2]), strict=True))
        except ValueError:
            pass
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """``/proc/<pid>/net/dev`` → counters per interface but ``lo``, under the wire schema's
    names."""
    interfaces = {}
    for line in text.splitlines()[2:]:  # two header lines
        interface, sep, counters = line.partition(":")
        name = interface.strip()
        if not sep or name == "lo":
            continue
        fields = counters.split()
        if len(fields) < 12:
            continue
        # receive: bytes packets errs drop fifo frame compressed multicast; transmit: the same
        # first four, from field 8 on
        figures = {}
        for offset, prefix in ((0, "rx"), (8, "tx")):
            figures[f"{prefix}_bytes"] = int(fields[offset])
            figures[f"{prefix}_packets"] = int(fields[offset + 1])
            figures[f"{prefix}_errors"] = int(fields[offset + 2])
            figures[f"{prefix}_dropped"] = int(fields[offset + 3])
        interfaces[name] = figures
    return interfaces


def parse_blkio_v1(text: str) -> dict[str, dict[str, int]]:
    """``blkio.throttle.io_service_bytes`` (``MAJ:MIN Read N`` lines) → bytes read and written
    per device."""
    devices: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3 or fields[1] not in ("Read", "Write"):
            continue  # the "Total N" line, and Sync/Async/Total per device (sums of these)
        device = devices.setdefault(fields[0], {"read_bytes": 0, "write_bytes": 0})
        device["read_bytes" if fields[1] == "Read" else "write_bytes"] += int(fields[2])
    return devices


def parse_io_stat(text: str) -> dict[str, dict[str, int]]:
    """v2 ``io.stat`` (``MAJ:MIN rbytes=N wbytes=N …`` lines) → bytes read and written per
    device."""
    devices = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        values = dict(field.partition("=")[::2] for field in fields[1:])
        devices[fields[0]] = {"read_bytes": int(values.get("rbytes", 0)),
                              "write_bytes": int(values.get("wbytes", 0))}
    return devices


def parse_limit(text: str) -> int | None:
    """A memory limit file's value; None for no limit (v2 ``max``, v1's near-2^63)."""
    value = text.strip()
    if value == "max":
        return None
    limit = int(value)
    return None if limit >= _V1_UNLIMITED else limit


def count_online_cpus(proc_stat: str) -> int:
    """CPUs as the daemon counts them for ``online_cpus``: the ``cpuN`` lines of /proc/stat."""
    return sum(1 for line in proc_stat.splitlines()
               if line.startswith("cpu") and line[3:4].isdigit()) or 1


def parse_mem_total(meminfo: str) -> int:
    """``/proc/meminfo`` → the host's memory in bytes."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no MemTotal line in meminfo")
