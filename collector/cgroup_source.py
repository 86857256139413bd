"""Readings from the kernel's own files: a container's cgroup and its network namespace.

The fast path. The Docker API is asked only for a container's main process id (one inspect per
container, cached); every sample is then a handful of small file reads, with no work in the
daemon and no wait for its one-second collection tick. A followed container's cgroup files are
kept open (``HeldFiles``: one ``pread`` each per sample instead of open, read and close), for as
many containers as half the soft RLIMIT_NOFILE allows; the others are read by open, read and
close, with the same figures:

    figure            cgroup v1                                   cgroup v2 (unified)
    cpu_usage_ns      cpuacct.usage                               cpu.stat usage_usec × 1000
    cpu_user/system   cpuacct.stat user/system × ns per tick      cpu.stat user/system_usec
    cpu throttling    cpu.stat nr_periods, nr_throttled,          cpu.stat nr_periods,
                      throttled_time                              nr_throttled, throttled_usec
    mem_cgroup_usage  memory.usage_in_bytes                       memory.current
    mem_usage         mem_cgroup_usage − total_inactive_file      mem_cgroup_usage − inactive_file
    mem_limit         memory.limit_in_bytes                       memory.max
    mem_max_usage     memory.max_usage_in_bytes                   memory.peak (kernel 5.19+)
    mem_failcnt       memory.failcnt                              (none: null)
    mem_rss, … swap   memory.stat total_* (figures.MEMORY_STAT_V1) memory.stat, memory.swap.current
    oom_kills         memory.oom_control oom_kill (kernel 4.13+)  memory.events oom_kill
    blk_devices       blkio.throttle.io_service_bytes(_recursive) io.stat rbytes/wbytes
    pids              pids.current                                pids.current
    net_interfaces         /proc/<pid>/net/dev, every interface but lo (totals: their sums)
    online_cpus            the cpuN lines of /proc/stat, as the daemon counts them

The container's cgroup is found from its main process, whatever the layout
(``cgroup_hierarchy.py``); the files are parsed by ``cgroup_files.py``.

Like the daemon, an unlimited memory limit is reported as the host's memory. CPU percent is
computed by ``figures.cpu_percent`` over wall-clock time, as for the API source.
"""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import docker
import docker.errors

from statspout.collector.cgroup_files import (
    VANISHED,
    HeldFiles,
    count_online_cpus,
    parse_blkio_v1,
    parse_flat_keyed,
    parse_io_stat,
    parse_limit,
    parse_mem_total,
    parse_net_dev,
    read_text,
)
from statspout.collector.cgroup_hierarchy import (
    CgroupHierarchies,
    CgroupUnreadable,
    ContainerFiles,
    locate_files,
)
from statspout.collector.discovery import ContainerInfo
from statspout.collector.figures import (
    Reading,
    block_totals,
    bounded,
    memory_breakdown,
    network_totals,
    usage_minus_inactive,
)
from statspout.logs import ThrottledErrors

log = logging.getLogger("statspout.collector")

DEFAULT_PROC_ROOT = "/proc"
DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup"
# Containers whose process id and cgroup files are remembered; the least recently read are
# forgotten first, so containers coming and going never grow it.
DEFAULT_CACHE_SIZE = 4096
# Descriptors a followed container holds at most: every cgroup file of ContainerFiles (v1: 11,
# v2: 9). /proc/<pid>/net/dev is opened at each read (see HeldFiles).
HELD_PER_CONTAINER = 12
# The number of online CPUs is read from /proc/stat at most this often.
ONLINE_CPUS_TTL_S = 5.0
# A read through the fallback loses nothing (the same figures, from the API) but costs the
# daemon work: said at most this often, with the container and the reason.
FALLBACK_LOG_EVERY_S = 60.0


# cpuacct.stat counts USER_HZ ticks; the daemon converts them to ns with the same factor.
NS_PER_TICK = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _times(value: int | None, factor: int) -> int | None:
    return None if value is None else value * factor


def _read_int(read: Callable[[str], str], path: str | None) -> int | None:
    return None if path is None else int(read(path))


def default_held_limit() -> int:
    """Containers whose files are held open: half the soft RLIMIT_NOFILE in descriptors, the
    other half left to sockets (ZeroMQ, the Docker API's pool) and the files read each time."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return soft // 2 // HELD_PER_CONTAINER


class FallbackSource(Protocol):
    name: str

    def read(self, container: ContainerInfo) -> Reading | None: ...


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
        held_limit: int | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._api = client.api if client is not None else None
        self._proc_root = proc_root
        self._hierarchies = CgroupHierarchies(cgroup_root)
        self._fallback = fallback
        self._cache_size = cache_size
        self._clock_ns = clock_ns
        self._files: OrderedDict[str, ContainerFiles] = OrderedDict()
        # The open files of remembered containers, while fewer than held_limit hold some
        # (first come, kept until forgotten: no churn when there are more).
        self._held: dict[str, HeldFiles] = {}
        self._held_limit = default_held_limit() if held_limit is None else held_limit
        self._held_limit_said = False
        self._lock = threading.Lock()
        self._host_memory: int | None = None
        self._online_cpus = (0, 0.0)  # (count, monotonic time it expires)
        self._fallback_log = ThrottledErrors(log, every_s=FALLBACK_LOG_EVERY_S)

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
        return (f"{self._hierarchies.describe()}, processes under {self._proc_root}, cgroup "
                f"files held open for up to {self._held_limit} containers "
                f"(≤ {self._held_limit * HELD_PER_CONTAINER} descriptors)")

    @property
    def open_descriptors(self) -> int:
        """Descriptors held open now, over every followed container."""
        with self._lock:
            return sum(held.open_count for held in self._held.values())

    def read(self, container: ContainerInfo) -> Reading | None:
        """One reading; None when the container vanished. A container whose files cannot be
        read from here is read through the fallback source when there is one."""
        try:
            return self._read(container)
        except (CgroupUnreadable, PermissionError) as exc:
            if self._fallback is None:
                raise
            self._fallback_log.warning("reading %s through the %s source instead (%s)",
                                       container.name, self._fallback.name, exc)
            return self._fallback.read(container)

    def forget(self, container_id: str) -> None:
        with self._lock:
            self._files.pop(container_id, None)
            self._release(container_id)

    def _release(self, container_id: str) -> None:
        """Close the container's held files; with self._lock held."""
        held = self._held.pop(container_id, None)
        if held is not None:
            held.close()

    def _read(self, container: ContainerInfo) -> Reading | None:
        # The second pass asks Docker again: the cached process may have ended because the
        # container stopped (then None) or restarted with a new main process.
        for fresh in (False, True):
            files = self._locate(replace(container, pid=0) if fresh else container, fresh)
            if files is None:
                return None
            try:
                return self._read_files(files, self._held.get(container.id))
            except PermissionError:
                raise
            except OSError as exc:
                if exc.errno not in VANISHED:
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
                self._release(self._files.popitem(last=False)[0])
            self._release(container_id)  # files of an earlier process of the container
            if len(self._held) < self._held_limit:
                self._held[container_id] = HeldFiles()
            elif not self._held_limit_said:
                self._held_limit_said = True
                log.info("cgroup files are held open for %d containers (half the soft "
                         "RLIMIT_NOFILE); the others are opened at each read (raise `ulimit -n` "
                         "to hold more)", self._held_limit)

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

    def _read_files(self, files: ContainerFiles, held: HeldFiles | None) -> Reading:
        read = read_text if held is None else held.read
        timestamp = self._clock_ns()
        if files.cpu_v2:
            cpu_stat = parse_flat_keyed(read(files.cpu))
            cpu_usage_ns = cpu_stat["usage_usec"] * 1000
            cpu_user_ns = _times(cpu_stat.get("user_usec"), 1000)
            cpu_system_ns = _times(cpu_stat.get("system_usec"), 1000)
            throttled_ns = _times(cpu_stat.get("throttled_usec"), 1000)
        else:
            cpu_usage_ns = int(read(files.cpu))
            # ticks of USER_HZ, which Docker's API turns into ns the same way
            ticks = (parse_flat_keyed(read(files.cpuacct_stat))
                     if files.cpuacct_stat else {})
            cpu_user_ns = _times(ticks.get("user"), NS_PER_TICK)
            cpu_system_ns = _times(ticks.get("system"), NS_PER_TICK)
            cpu_stat = parse_flat_keyed(read(files.cpu_stat_v1)) if files.cpu_stat_v1 else {}
            throttled_ns = cpu_stat.get("throttled_time")
        memory_stat = parse_flat_keyed(read(files.memory_stat))
        breakdown = memory_breakdown(memory_stat)
        usage = int(read(files.memory_usage))
        limit = parse_limit(read(files.memory_limit))
        if files.swap is not None:  # v2 only: v1 has total_swap in memory.stat
            breakdown["mem_swap"] = int(read(files.swap))
        host_memory = self._host_memory_bytes()
        if limit is None or limit > host_memory:  # the daemon caps the limit the same way
            limit = host_memory
        devices = {}
        if files.blkio is not None:
            text = read(files.blkio)
            devices = parse_io_stat(text) if files.blkio_v2 else parse_blkio_v1(text)
        interfaces = parse_net_dev(read_text(files.net_dev))
        return Reading(timestamp=timestamp, figures={
            "cpu_usage_ns": cpu_usage_ns,
            "online_cpus": self._online_cpu_count(),
            "mem_usage": usage_minus_inactive(usage, breakdown["mem_inactive_file"]),
            "mem_limit": limit,
            "pids": int(read(files.pids)) if files.pids is not None else 0,
            "cpu_user_ns": cpu_user_ns,
            "cpu_system_ns": cpu_system_ns,
            "cpu_periods": cpu_stat.get("nr_periods"),
            "cpu_throttled_periods": cpu_stat.get("nr_throttled"),
            "cpu_throttled_ns": throttled_ns,
            "mem_cgroup_usage": usage,
            "mem_max_usage": _read_int(read, files.max_usage),
            "mem_failcnt": _read_int(read, files.failcnt),
            **breakdown,
            "mem_stat": bounded(memory_stat),
            "oom_kills": (parse_flat_keyed(read(files.oom)).get("oom_kill")
                          if files.oom is not None else None),
            "net_interfaces": bounded(interfaces),
            "blk_devices": bounded(devices),
            **network_totals(interfaces),
            **block_totals(devices),
        })

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
