"""Finding a container's cgroup files: the hierarchies mounted under the cgroup root, and where
one container's figures are in them.

The container's cgroup is found, not guessed: ``/proc/<pid>/cgroup`` names it in every
hierarchy, whatever the layout (cgroupfs ``/docker/<id>``, systemd
``/system.slice/docker-<id>.scope``, a ``--cgroup-parent``), and each hierarchy's mount is
found by its controller's name under the cgroup root (``cpu,cpuacct``, ``cpuacct``, ``unified``
or the root itself on a pure v2 host). A controller is read from v1 when the process is in a v1
hierarchy for it, else from the unified hierarchy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from statspout.collector.cgroup_files import VANISHED, parse_proc_cgroup, read_text


class CgroupUnreadable(Exception):
    """The container runs, but its cgroup or /proc entry cannot be read from here (wrong root
    paths, a private cgroup namespace, missing permissions)."""


@dataclass(frozen=True, slots=True)
class ContainerFiles:
    """Where one container's figures are; ``v2`` tells how to read each file."""

    pid: int
    cpu: str
    cpu_v2: bool
    # v1 only: cpuacct.stat (user/system ticks) and the cpu controller's cpu.stat (throttling);
    # on v2 the one cpu.stat (``cpu``) has both.
    cpuacct_stat: str | None
    cpu_stat_v1: str | None
    # memory.stat, the usage (v1 memory.usage_in_bytes, v2 memory.current) and the limit (v1
    # memory.limit_in_bytes, v2 memory.max), joined once here rather than at every sample
    memory_stat: str
    memory_usage: str
    memory_limit: str
    # The memory files a kernel may lack (None then): v1 memory.max_usage_in_bytes / v2
    # memory.peak (5.19+), v1 memory.failcnt, v1 memory.oom_control / v2 memory.events (the
    # oom_kill line: v1 since 4.13), v2 memory.swap.current.
    max_usage: str | None
    failcnt: str | None
    oom: str | None
    swap: str | None
    blkio: str | None
    blkio_v2: bool
    pids: str | None
    net_dev: str


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
        if exc.errno in VANISHED:
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
    cpu_v1_dir = v1_dir("cpu")
    memory_dir = v1_dir("memory")
    memory_v2 = memory_dir is None
    if memory_dir is None:
        current = unified_file("memory.current")
        if current is None:
            raise CgroupUnreadable(f"{where}: no memory cgroup (v1 memory nor v2 memory.current)")
        memory_dir = os.path.dirname(current)

    def memory_file(v1_name: str | None, v2_name: str | None) -> str | None:
        name = v2_name if memory_v2 else v1_name
        if name is None:
            return None
        path = os.path.join(memory_dir, name)
        return path if os.path.exists(path) else None
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
        cpuacct_stat=os.path.join(cpu_dir, "cpuacct.stat") if cpu_dir else None,
        cpu_stat_v1=os.path.join(cpu_v1_dir, "cpu.stat") if cpu_v1_dir else None,
        memory_stat=os.path.join(memory_dir, "memory.stat"),
        memory_usage=os.path.join(
            memory_dir, "memory.current" if memory_v2 else "memory.usage_in_bytes"),
        memory_limit=os.path.join(
            memory_dir, "memory.max" if memory_v2 else "memory.limit_in_bytes"),
        max_usage=memory_file("memory.max_usage_in_bytes", "memory.peak"),
        failcnt=memory_file("memory.failcnt", None),
        oom=memory_file("memory.oom_control", "memory.events"),
        swap=memory_file(None, "memory.swap.current"),
        blkio=blkio,
        blkio_v2=blkio_dir is None,
        pids=pids,
        net_dev=os.path.join(proc_root, str(pid), "net", "dev"),
    )
