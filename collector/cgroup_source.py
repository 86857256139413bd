"""Readings from the kernel's own files: a container's cgroup and its network namespace.

The fast path. The Docker API is asked only for a container's main process id (one inspect per
container, cached); every sample is then a handful of small file reads, with no work in the
daemon and no wait for its one-second collection tick:

    figure            cgroup v1                                   cgroup v2 (unified)
    cpu_usage_ns      cpuacct.usage                               cpu.stat usage_usec × 1000
    mem_usage         memory.usage_in_bytes − total_inactive_file memory.current − inactive_file
    mem_limit         memory.limit_in_bytes                       memory.max
    blk_*_bytes       blkio.throttle.io_service_bytes(_recursive) io.stat rbytes/wbytes
    pids              pids.current                                pids.current
    network                /proc/<pid>/net/dev, summed over every interface but lo
    online_cpus            the cpuN lines of /proc/stat, as the daemon counts them

The container's cgroup is found, not guessed: ``/proc/<pid>/cgroup`` names it in every
hierarchy, whatever the layout (cgroupfs ``/docker/<id>``, systemd
``/system.slice/docker-<id>.scope``, a ``--cgroup-parent``), and each hierarchy's mount is
found by its controller's name under the cgroup root (``cpu,cpuacct``, ``cpuacct``, ``unified``
or the root itself on a pure v2 host). A controller is read from v1 when the process is in a v1
hierarchy for it, else from the unified hierarchy.

Like the daemon, an unlimited memory limit is reported as the host's memory. CPU percent is
computed by ``figures.cpu_percent`` over wall-clock time (``system_cpu_ns`` is None): for a
host whose CPUs are all online this is the same quantity docker stats shows.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import docker
import docker.errors

from statspout.collector.discovery import ContainerInfo
from statspout.collector.figures import Reading

log = logging.getLogger("statspout.collector")

DEFAULT_PROC_ROOT = "/proc"
DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup"
# Containers whose process id and cgroup files are remembered; the least recently read are
# forgotten first, so containers coming and going never grow it.
DEFAULT_CACHE_SIZE = 4096
# The number of online CPUs is read from /proc/stat at most this often.
ONLINE_CPUS_TTL_S = 5.0

# A file that went away under us: the container stopped (its cgroup was removed, ENODEV on a
# cgroup file already open; ESRCH/ENOENT for the /proc entry of a process that ended).
_VANISHED = frozenset({errno.ENOENT, errno.ESRCH, errno.ENODEV})
# v1 reports "no limit" as a page-rounded 2^63 − 1; anything this large means unlimited.
_V1_UNLIMITED = 1 << 62


class CgroupUnreadable(Exception):
    """The container runs, but its cgroup or /proc entry cannot be read from here (wrong root
    paths, a private cgroup namespace, missing permissions)."""


class FallbackSource(Protocol):
    name: str

    def read(self, container: ContainerInfo) -> Reading | None: ...


@dataclass(frozen=True, slots=True)
class ContainerFiles:
    """Where one container's figures are; ``v2`` tells how to read each file."""

    pid: int
    cpu: str
    cpu_v2: bool
    memory_dir: str
    memory_v2: bool
    blkio: str | None
    blkio_v2: bool
    pids: str | None
    net_dev: str


# Parsing: pure functions over the files' text, tested on recorded contents.


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
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def parse_net_dev(text: str) -> dict[str, int]:
    """``/proc/<pid>/net/dev`` → network totals over every interface but ``lo``, under the
    wire schema's names."""
    totals = dict.fromkeys(
        ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped",
         "tx_bytes", "tx_packets", "tx_errors", "tx_dropped"), 0
    )
    for line in text.splitlines()[2:]:  # two header lines
        interface, sep, counters = line.partition(":")
        if not sep or interface.strip() == "lo":
            continue
        fields = counters.split()
        if len(fields) < 12:
            continue
        # receive: bytes packets errs drop fifo frame compressed multicast; transmit: the same
        # first four, from field 8 on
        for offset, prefix in ((0, "rx"), (8, "tx")):
            totals[f"{prefix}_bytes"] += int(fields[offset])
            totals[f"{prefix}_packets"] += int(fields[offset + 1])
            totals[f"{prefix}_errors"] += int(fields[offset + 2])
            totals[f"{prefix}_dropped"] += int(fields[offset + 3])
    return totals


def parse_blkio_v1(text: str) -> tuple[int, int]:
    """``blkio.throttle.io_service_bytes`` (``MAJ:MIN Read N`` lines) → (read, write) bytes
    summed over devices."""
    read = write = 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3:
            continue  # the "Total N" line
        if fields[1] == "Read":
            read += int(fields[2])
        elif fields[1] == "Write":
            write += int(fields[2])
    return read, write


def parse_io_stat(text: str) -> tuple[int, int]:
    """v2 ``io.stat`` (``MAJ:MIN rbytes=N wbytes=N …`` lines) → (read, write) bytes."""
    read = write = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key == "rbytes":
                read += int(value)
            elif key == "wbytes":
                write += int(value)
    return read, write


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
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no MemTotal line in meminfo")


def read_text(path: str) -> str:
    """The whole file, opened, read and closed at once: no descriptor outlives a sample."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii", errors="replace")


# Finding the hierarchies and a container's files.


class CgroupHierarchies:
    """The cgroup mounts under one root: v1 hierarchies by controller, and the unified one."""

    def __init__(self, cgroup_root: str) -> None:
        self.root = cgroup_root
        self.unified: str | None = None
        self.v1: dict[str, str] = {}
        if os.path.exists(os.path.join(cgroup_root, "cgroup.controllers")):
            self.unified = cgroup_root  # a pure v2 host
            return
        if os.path.exists(os.path.join(cgroup_root, "unified", "cgroup.controllers")):
            self.unified = os.path.join(cgroup_root, "unified")  # hybrid
        try:
            entries = sorted(os.listdir(cgroup_root))
        except OSError:
            return
        for entry in entries:
            mount = os.path.join(cgroup_root, entry)
            if entry == "unified" or not os.path.isdir(mount):
                continue
            for controller in entry.split(","):
                # "cpu,cpuacct" and its symlinks "cpu" and "cpuacct" are one mount; the
                # named systemd hierarchy is mounted as "systemd" for "name=systemd"
                self.v1.setdefault(controller, mount)
                self.v1.setdefault(f"name={controller}", mount)

    @property
    def readable(self) -> bool:
        return bool(self.unified) or ("cpuacct" in self.v1 and "memory" in self.v1)

    def describe(self) -> str:
        kinds = []
        if self.v1:
            kinds.append("v1")
        if self.unified:
            kinds.append(f"unified at {self.unified}")
        return f"cgroup {' + '.join(kinds) or 'none'} under {self.root}"


def locate_files(
    hierarchies: CgroupHierarchies, proc_root: str, container_id: str, pid: int
) -> ContainerFiles | None:
    """The files of the container whose main process is ``pid``; None when that process is
    gone or is not in the container's cgroup (its pid was reused). Raises CgroupUnreadable when
    the process is the container's but its cgroup cannot be found under the cgroup root."""
    try:
        text = read_text(os.path.join(proc_root, str(pid), "cgroup"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in _VANISHED:
            return None
        raise
    v1: dict[str, str] = {}
    unified_path: str | None = None
    for controllers, path in parse_proc_cgroup(text):
        if not controllers:
            unified_path = path
        for controller in controllers:
            v1[controller] = path
    if not any(container_id in path for path in [*v1.values(), unified_path or ""]):
        return None

    def v1_dir(controller: str) -> str | None:
        mount = hierarchies.v1.get(controller)
        path = v1.get(controller)
        if mount is None or path is None:
            return None
        directory = os.path.join(mount, path.lstrip("/"))
        return directory if os.path.isdir(directory) else None

    unified_dir = None
    if hierarchies.unified and unified_path is not None:
        candidate = os.path.join(hierarchies.unified, unified_path.lstrip("/"))
        if os.path.isdir(candidate):
            unified_dir = candidate

    def unified_file(name: str) -> str | None:
        if unified_dir is None:
            return None
        path = os.path.join(unified_dir, name)
        return path if os.path.exists(path) else None

    where = f"container {container_id[:12]} (pid {pid}) under {hierarchies.root}"
    cpu_dir = v1_dir("cpuacct")
    cpu = os.path.join(cpu_dir, "cpuacct.usage") if cpu_dir else unified_file("cpu.stat")
    if cpu is None:
        raise CgroupUnreadable(f"{where}: neither cpuacct.usage (v1) nor cpu.stat (v2) found; "
                               f"paths in /proc/{pid}/cgroup: {text.strip()!r}")
    memory_dir = v1_dir("memory")
    memory_v2 = memory_dir is None
    if memory_v2:
        current = unified_file("memory.current")
        if current is None:
            raise CgroupUnreadable(f"{where}: no memory cgroup (v1 memory nor v2 memory.current)")
        memory_dir = os.path.dirname(current)
    blkio_dir = v1_dir("blkio")
    blkio = None
    if blkio_dir:
        for name in (
            "blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes"
        ):
            if os.path.exists(os.path.join(blkio_dir, name)):
                blkio = os.path.join(blkio_dir, name)
                break
    else:
        blkio = unified_file("io.stat")
    pids_dir = v1_dir("pids")
    pids = os.path.join(pids_dir, "pids.current") if pids_dir else unified_file("pids.current")
    return ContainerFiles(
        pid=pid,
        cpu=cpu,
        cpu_v2=cpu_dir is None,
        memory_dir=memory_dir,
        memory_v2=memory_v2,
        blkio=blkio,
        blkio_v2=blkio_dir is None,
        pids=pids,
        net_dev=os.path.join(proc_root, str(pid), "net", "dev"),
    )


class CgroupSource:
    """Readings from cgroup files and ``/proc``; the Docker API only to learn a pid."""

    name = "cgroup"
    # Reads are local file reads, so a cycle is read in turn by one pool thread. The rare
    # blocking calls (inspect for a new container's pid, a fallback API read) delay that
    # cycle's later containers by their own length only.
    concurrent = False

    def __init__(
        self,
        client: docker.DockerClient | None,
        *,
        proc_root: str = DEFAULT_PROC_ROOT,
        cgroup_root: str = DEFAULT_CGROUP_ROOT,
        fallback: FallbackSource | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._api = client.api if client is not None else None
        self._proc_root = proc_root
        self._hierarchies = CgroupHierarchies(cgroup_root)
        self._fallback = fallback
        self._cache_size = cache_size
        self._clock_ns = clock_ns
        self._files: OrderedDict[str, ContainerFiles] = OrderedDict()
        self._lock = threading.Lock()
        self._host_memory: int | None = None
        self._online_cpus = (0, 0.0)  # (count, monotonic time it expires)
        self.fallback_reads = 0
        self._last_fallback_log = 0.0

    def unreadable_reason(self) -> str | None:
        """Why this host's cgroups and /proc cannot be read from here; None when they can."""
        if not self._hierarchies.readable:
            return f"no readable cgroup hierarchy under {self._hierarchies.root}"
        try:
            read_text(os.path.join(self._proc_root, "self", "cgroup"))
            read_text(os.path.join(self._proc_root, "stat"))
        except OSError as exc:
            return f"{self._proc_root} is not readable: {exc}"
        return None

    def describe(self) -> str:
        return f"{self._hierarchies.describe()}, processes under {self._proc_root}"

    @property
    def cached_containers(self) -> int:
        return len(self._files)

    def locate(self, container: ContainerInfo) -> ContainerFiles | None:
        """The files a reading of this container opens; None when it is not running."""
        return self._locate(container, fresh=False)

    def read(self, container: ContainerInfo) -> Reading | None:
        """One reading; None when the container vanished. A container whose files cannot be
        read from here is read through the fallback source when there is one."""
        try:
            return self._read(container)
        except (CgroupUnreadable, PermissionError) as exc:
            if self._fallback is None:
                raise
            self.fallback_reads += 1
            now = time.monotonic()
            if now - self._last_fallback_log >= 60.0:
                self._last_fallback_log = now
                log.warning("reading %s through the %s source instead (%s; %d such reads so far)",
                            container.name, self._fallback.name, exc, self.fallback_reads)
            return self._fallback.read(container)

    def forget(self, container_id: str) -> None:
        with self._lock:
            self._files.pop(container_id, None)

    def _read(self, container: ContainerInfo) -> Reading | None:
        # The second pass asks Docker again: the cached process may have ended because the
        # container stopped (then None) or restarted with a new main process.
        for fresh in (False, True):
            files = self._locate(replace(container, pid=0) if fresh else container, fresh)
            if files is None:
                return None
            try:
                return self._read_files(files)
            except PermissionError:
                raise
            except OSError as exc:
                if exc.errno not in _VANISHED:
                    raise
                self.forget(container.id)
        return None  # running a moment ago per Docker, and its files went: it has stopped

    def _locate(self, container: ContainerInfo, fresh: bool) -> ContainerFiles | None:
        if not fresh:
            with self._lock:
                files = self._files.get(container.id)
                if files is not None and container.pid in (0, files.pid):
                    self._files.move_to_end(container.id)
                    return files
            if container.pid:
                files = locate_files(
                    self._hierarchies, self._proc_root, container.id, container.pid
                )
                if files is not None:
                    self._remember(container.id, files)
                    return files
        pid = self._inspect_pid(container.id)
        if not pid:
            self.forget(container.id)
            return None
        files = locate_files(self._hierarchies, self._proc_root, container.id, pid)
        if files is None:
            raise CgroupUnreadable(
                f"container {container.name} ({container.id[:12]}) runs as pid {pid} per "
                f"Docker, but {self._proc_root}/{pid}/cgroup does not name it (is "
                f"{self._proc_root} the host's /proc, and the cgroup namespace the host's?)"
            )
        self._remember(container.id, files)
        return files

    def _remember(self, container_id: str, files: ContainerFiles) -> None:
        with self._lock:
            self._files[container_id] = files
            self._files.move_to_end(container_id)
            while len(self._files) > self._cache_size:
                self._files.popitem(last=False)

    def _inspect_pid(self, container_id: str) -> int:
        """The main process of a running container, from Docker; 0 when it is not running."""
        if self._api is None:
            return 0
        try:
            attrs = self._api.inspect_container(container_id)
        except docker.errors.NotFound:
            return 0
        state = attrs.get("State") or {}
        return int(state.get("Pid") or 0) if state.get("Running") else 0

    def _read_files(self, files: ContainerFiles) -> Reading:
        timestamp_ns = self._clock_ns()
        if files.cpu_v2:
            cpu_usage_ns = parse_flat_keyed(read_text(files.cpu))["usage_usec"] * 1000
        else:
            cpu_usage_ns = int(read_text(files.cpu))
        memory_stat = parse_flat_keyed(read_text(os.path.join(files.memory_dir, "memory.stat")))
        if files.memory_v2:
            usage = int(read_text(os.path.join(files.memory_dir, "memory.current")))
            inactive = memory_stat.get("inactive_file")
            limit = parse_limit(read_text(os.path.join(files.memory_dir, "memory.max")))
        else:
            usage = int(read_text(os.path.join(files.memory_dir, "memory.usage_in_bytes")))
            inactive = memory_stat.get("total_inactive_file")
            limit = parse_limit(read_text(os.path.join(files.memory_dir, "memory.limit_in_bytes")))
        if inactive is not None and inactive < usage:  # as docker stats computes it
            usage -= inactive
        host_memory = self._host_memory_bytes()
        if limit is None or limit > host_memory:  # the daemon caps the limit the same way
            limit = host_memory
        blk_read = blk_write = 0
        if files.blkio is not None:
            text = read_text(files.blkio)
            blk_read, blk_write = parse_io_stat(text) if files.blkio_v2 else parse_blkio_v1(text)
        pids = int(read_text(files.pids)) if files.pids is not None else 0
        network = parse_net_dev(read_text(files.net_dev))
        return Reading(
            timestamp_ns=timestamp_ns,
            cpu_usage_ns=cpu_usage_ns,
            system_cpu_ns=None,
            online_cpus=self._online_cpu_count(),
            mem_usage=usage,
            mem_limit=limit,
            blk_read_bytes=blk_read,
            blk_write_bytes=blk_write,
            pids=pids,
            **network,
        )

    def _host_memory_bytes(self) -> int:
        if self._host_memory is None:
            self._host_memory = parse_mem_total(read_text(os.path.join(self._proc_root, "meminfo")))
        return self._host_memory

    def _online_cpu_count(self) -> int:
        count, expires = self._online_cpus
        now = time.monotonic()
        if now >= expires:
            count = count_online_cpus(read_text(os.path.join(self._proc_root, "stat")))
            self._online_cpus = (count, now + ONLINE_CPUS_TTL_S)
        return count


def cgroup_files_of(files: ContainerFiles) -> list[str]:
    """Every file a reading of this container opens (for the benchmark's raw floor)."""
    paths = [files.cpu, os.path.join(files.memory_dir, "memory.stat"), files.net_dev]
    if files.memory_v2:
        paths += [os.path.join(files.memory_dir, n) for n in ("memory.current", "memory.max")]
    else:
        paths += [os.path.join(files.memory_dir, n)
                  for n in ("memory.usage_in_bytes", "memory.limit_in_bytes")]
    paths += [p for p in (files.blkio, files.pids) if p is not None]
    return paths
