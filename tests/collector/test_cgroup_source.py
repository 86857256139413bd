"""The cgroup fast path: parsing and finding on recorded file trees (cgroup v1 and v2, cgroupfs
and systemd layouts), then both sources on the same real containers at the same time."""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import docker
import docker.errors
import pytest
from support.docker_engine import IMAGE, TEST_LABEL
from support.processes import collector_into_socket
from support.readings import make_reading
from support.waiting import wait_for

from statspout import wire
from statspout.collector import main as collector_main
from statspout.collector.api_source import ApiSource
from statspout.collector.cgroup_files import (
    HeldFiles,
    parse_blkio_v1,
    parse_io_stat,
    parse_net_dev,
    parse_proc_cgroup,
)
from statspout.collector.cgroup_hierarchy import CgroupUnreadable
from statspout.collector.cgroup_source import CgroupSource
from statspout.collector.discovery import ContainerInfo
from statspout.collector.figures import Reading, cpu_percent

ID = "cc9284bf3e624ddb3d03ac37a70cb18ad671c155f72630e97912f0db48a32126"
OTHER_ID = "3651b8ae8079760e1a1c772544b58ef92a10376d72f4756c330356a9bc91d8ad"
PID = 12265
HOST_MEMORY = 24684096 * 1024

# Recorded on the development machine (Docker 20.10, cgroupfs driver, cgroup v1 with a cgroup2
# mount at /sys/fs/cgroup/unified): a busybox container that wrote 20 MiB to its filesystem.
V1_MEMORY_STAT = """\
cache 21004288
rss 53248
rss_huge 0
shmem 0
mapped_file 0
dirty 0
writeback 0
workingset_refault_anon 0
workingset_refault_file 8
swap 0
swapcached 0
pgpgin 1154
pgpgout 1111
pgfault 1516
pgmajfault 1
inactive_anon 0
active_anon 0
inactive_file 20971520
active_file 32768
unevictable 0
hierarchical_memory_limit 9223372036854771712
hierarchical_memsw_limit 9223372036854771712
total_cache 21004288
total_rss 53248
total_rss_huge 0
total_shmem 0
total_mapped_file 0
total_dirty 0
total_writeback 0
total_workingset_refault_anon 0
total_workingset_refault_file 8
total_swap 0
total_swapcached 0
total_pgpgin 1154
total_pgpgout 1111
total_pgfault 1516
total_pgmajfault 1
total_inactive_anon 0
total_active_anon 0
total_inactive_file 20971520
total_active_file 32768
total_unevictable 0
"""
V1_PROC_CGROUP = "".join(
    f"{n}:{c}:/docker/{ID}\n"
    for n, c in [(9, "name=systemd"), (8, "pids"), (7, "blkio"), (6, "freezer"), (5, "devices"),
                 (4, "memory"), (3, "cpuset"), (2, "cpuacct"), (1, "cpu"), (0, "")]
)
V1_BLKIO = """\
8:0 Read 4096
8:0 Write 1048576
8:0 Sync 1048576
8:0 Async 4096
8:0 Discard 0
8:0 Total 1052672
8:16 Read 8192
8:16 Write 0
8:16 Total 8192
Total 1060864
"""
# Shaped as the kernel writes them (a v2 host was not at hand): memory.stat of cgroup v2 has
# no total_* lines; io.stat has one line per device.
V2_MEMORY_STAT = """\
anon 2191360
file 41943040
kernel 589824
kernel_stack 32768
pagetables 40960
sock 0
shmem 0
file_mapped 0
file_dirty 0
file_writeback 0
inactive_anon 2187264
active_anon 4096
inactive_file 41811968
active_file 131072
unevictable 0
pgfault 2254
pgmajfault 0
"""
V2_IO_STAT = """\
254:0 rbytes=4096 wbytes=2097152 rios=1 wios=16 dbytes=0 dios=0
259:0 rbytes=12288 wbytes=0 rios=3 wios=0 dbytes=0 dios=0
"""
V2_CPU_STAT = """\
usage_usec 44059
user_usec 17623
system_usec 26435
nr_periods 120
nr_throttled 31
throttled_usec 2345678
"""
# The other v2 files, written by hand after Documentation/admin-guide/cgroup-v2.rst.
V2_MEMORY_EVENTS = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n"
# v1 files as this machine's kernel (6.1) writes them, for a container with a CPU quota.
V1_CPUACCT_STAT = "user 2\nsystem 3\n"
V1_CPU_STAT = "nr_periods 250\nnr_throttled 180\nthrottled_time 9876543210\n"
V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"
NET_DEV = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast"
    "|bytes    packets errs drop fifo colls carrier compressed\n"
    "    lo:     560       8    0    0    0     0          0         0"
    "      560       8    0    0    0     0       0          0\n"
    "  eth0:   12345      67    1    2    0     0          0         0"
    "     5432      21    3    4    0     0       0          0\n"
    "  eth1:    1000      10    0    0    0     0          0         0"
    "     2000      20    0    1    0     0       0          0\n"
)
PROC_STAT = """\
cpu  16827 0 3258 111980 1396 0 321 1732 0 0
cpu0 4359 0 1274 60937 141 0 182 872 0 0
cpu1 12468 0 1983 51042 1255 0 139 860 0 0
intr 358767 0 0 0
ctxt 572661
"""
MEMINFO = "MemTotal:       24684096 kB\nMemFree:        23627540 kB\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_proc(root: Path, pid: int, proc_cgroup: str, net_dev: str = NET_DEV) -> None:
    write(root / "stat", PROC_STAT)
    write(root / "meminfo", MEMINFO)
    write(root / "self" / "cgroup", "0::/\n")
    write(root / str(pid) / "cgroup", proc_cgroup)
    write(root / str(pid) / "net" / "dev", net_dev)


def make_v1(cgroup: Path, proc: Path, *, container_id: str = ID, pid: int = PID,
            systemd: bool = False, limit: str = "9223372036854771712") -> None:
    """A hybrid v1 host; cgroupfs layout (``/docker/<id>``, controllers mounted apart as on
    the development machine) or systemd layout (``cpu,cpuacct`` joined, with symlinks)."""
    path = f"system.slice/docker-{container_id}.scope" if systemd else f"docker/{container_id}"
    cpu_mount = "cpu,cpuacct" if systemd else "cpuacct"
    write(cgroup / cpu_mount / path / "cpuacct.usage", "44059375\n")
    write(cgroup / cpu_mount / path / "cpuacct.stat", V1_CPUACCT_STAT)
    write(cgroup / ("cpu,cpuacct" if systemd else "cpu") / path / "cpu.stat", V1_CPU_STAT)
    write(cgroup / "memory" / path / "memory.max_usage_in_bytes", "30000000\n")
    write(cgroup / "memory" / path / "memory.failcnt", "7\n")
    write(cgroup / "memory" / path / "memory.oom_control", V1_OOM_CONTROL)
    write(cgroup / "memory" / path / "memory.usage_in_bytes", "22171648\n")
    write(cgroup / "memory" / path / "memory.limit_in_bytes", limit + "\n")
    write(cgroup / "memory" / path / "memory.stat", V1_MEMORY_STAT)
    write(cgroup / "blkio" / path / "blkio.throttle.io_service_bytes_recursive", V1_BLKIO)
    write(cgroup / "pids" / path / "pids.current", "1\n")
    write(cgroup / "unified" / "cgroup.controllers", "hugetlb\n")
    write(cgroup / "unified" / path / "cpu.stat", V2_CPU_STAT)
    if systemd:
        for name in ("cpu", "cpuacct"):
            if not (cgroup / name).exists():
                (cgroup / name).symlink_to("cpu,cpuacct")
        lines = [(4, "cpu,cpuacct"), (3, "memory"), (2, "blkio"), (1, "pids"),
                 (5, "name=systemd"), (0, "")]
        proc_cgroup = "".join(f"{n}:{c}:/{path}\n" for n, c in lines)
    else:
        proc_cgroup = V1_PROC_CGROUP.replace(ID, container_id)
    make_proc(proc, pid, proc_cgroup)


def make_v2(cgroup: Path, proc: Path, *, container_id: str = ID, pid: int = PID,
            systemd: bool = True, limit: str = "max") -> None:
    path = f"system.slice/docker-{container_id}.scope" if systemd else f"docker/{container_id}"
    write(cgroup / "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
    write(cgroup / path / "cpu.stat", V2_CPU_STAT)
    write(cgroup / path / "memory.current", "44326912\n")
    write(cgroup / path / "memory.max", limit + "\n")
    write(cgroup / path / "memory.stat", V2_MEMORY_STAT)
    write(cgroup / path / "io.stat", V2_IO_STAT)
    write(cgroup / path / "pids.current", "3\n")
    write(cgroup / path / "memory.events", V2_MEMORY_EVENTS)
    write(cgroup / path / "memory.swap.current", "65536\n")
    make_proc(proc, pid, f"0::/{path}\n")


class FakeDockerApi:
    """Answers inspect with the pids it is given; counts the calls."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.inspects = 0

    def inspect_container(self, container_id: str) -> dict:
        self.inspects += 1
        if container_id not in self.pids:
            raise docker.errors.NotFound(f"No such container: {container_id}")
        pid = self.pids[container_id]
        return {"Id": container_id, "State": {"Running": pid > 0, "Pid": pid}}


def fake_client(pids: dict[str, int]) -> SimpleNamespace:
    return SimpleNamespace(api=FakeDockerApi(pids))


def source_for(tmp_path: Path, pids: dict[str, int] | None = None, **kwargs) -> CgroupSource:
    return CgroupSource(
        fake_client({ID: PID} if pids is None else pids),
        proc_root=str(tmp_path / "proc"),
        cgroup_root=str(tmp_path / "cgroup"),
        clock_ns=lambda: 1_700_000_000_000_000_000,
        **kwargs,
    )


NETWORK = dict(rx_bytes=13345, rx_packets=77, rx_errors=1, rx_dropped=2,
               tx_bytes=7432, tx_packets=41, tx_errors=3, tx_dropped=5)
INTERFACES = {
    "eth0": dict(rx_bytes=12345, rx_packets=67, rx_errors=1, rx_dropped=2,
                 tx_bytes=5432, tx_packets=21, tx_errors=3, tx_dropped=4),
    "eth1": dict(rx_bytes=1000, rx_packets=10, rx_errors=0, rx_dropped=0,
                 tx_bytes=2000, tx_packets=20, tx_errors=0, tx_dropped=1),
}
V1_DEVICES = {"8:0": {"read_bytes": 4096, "write_bytes": 1048576},
              "8:16": {"read_bytes": 8192, "write_bytes": 0}}
V2_DEVICES = {"254:0": {"read_bytes": 4096, "write_bytes": 2097152},
              "259:0": {"read_bytes": 12288, "write_bytes": 0}}


def memory_stat(text: str) -> dict[str, int]:
    return {line.split()[0]: int(line.split()[1]) for line in text.splitlines()}


# Parsing


def test_net_dev_per_interface_but_lo():
    assert parse_net_dev(NET_DEV) == INTERFACES


def test_net_dev_of_a_container_without_network_has_no_interface():
    only_lo = "\n".join(NET_DEV.splitlines()[:3])
    assert parse_net_dev(only_lo) == {}


def test_block_io_per_device():
    assert parse_blkio_v1(V1_BLKIO) == V1_DEVICES
    assert parse_blkio_v1("Total 0\n") == {}
    assert parse_io_stat(V2_IO_STAT) == V2_DEVICES


def test_proc_cgroup_lines():
    entries = parse_proc_cgroup("4:cpu,cpuacct:/system.slice/docker-x.scope\n0::/\n")
    assert entries == [(("cpu", "cpuacct"), "/system.slice/docker-x.scope"), ((), "/")]


# Readings from recorded trees


def test_v1_cgroupfs_layout(tmp_path):
    make_v1(tmp_path / "cgroup", tmp_path / "proc")
    reading = source_for(tmp_path).read(ContainerInfo(ID, "rec", "busybox", pid=PID))
    assert reading == make_reading(
        timestamp=1_700_000_000_000_000_000,
        cpu_usage_ns=44059375,  # cpuacct.usage, not the unified cpu.stat
        online_cpus=2,
        mem_usage=22171648 - 20971520,  # minus total_inactive_file
        mem_limit=HOST_MEMORY,  # unlimited: the host's memory, as the daemon reports it
        blk_read_bytes=12288,
        blk_write_bytes=1048576,
        pids=1,
        **NETWORK,
        cpu_user_ns=2 * 10_000_000,  # USER_HZ ticks of 10 ms
        cpu_system_ns=3 * 10_000_000,
        cpu_periods=250, cpu_throttled_periods=180, cpu_throttled_ns=9876543210,
        mem_cgroup_usage=22171648,
        mem_max_usage=30000000,
        mem_failcnt=7,
        mem_rss=53248, mem_cache=21004288, mem_active_file=32768,
        mem_inactive_file=20971520, mem_mapped_file=0, mem_swap=0,
        mem_pgfault=1516, mem_pgmajfault=1,
        mem_stat=memory_stat(V1_MEMORY_STAT),
        oom_kills=1,
        net_interfaces=INTERFACES,
        blk_devices=V1_DEVICES,
    )


def test_v1_systemd_layout_with_joined_controllers(tmp_path):
    make_v1(tmp_path / "cgroup", tmp_path / "proc", systemd=True, limit="268435456")
    reading = source_for(tmp_path).read(ContainerInfo(ID, "rec", "busybox", pid=PID))
    assert reading is not None
    assert reading.figures["cpu_usage_ns"] == 44059375
    assert reading.figures["mem_usage"] == 22171648 - 20971520
    assert reading.figures["mem_limit"] == 268435456
    assert reading.figures["pids"] == 1


@pytest.mark.parametrize("systemd", [True, False])
def test_v2_unified_layouts(tmp_path, systemd):
    make_v2(tmp_path / "cgroup", tmp_path / "proc", systemd=systemd)
    reading = source_for(tmp_path).read(ContainerInfo(ID, "rec", "busybox", pid=PID))
    assert reading == make_reading(
        timestamp=1_700_000_000_000_000_000,
        cpu_usage_ns=44059 * 1000,
        online_cpus=2,
        mem_usage=44326912 - 41811968,  # minus inactive_file
        mem_limit=HOST_MEMORY,  # "max"
        blk_read_bytes=16384,
        blk_write_bytes=2097152,
        pids=3,
        **NETWORK,
        cpu_user_ns=17623 * 1000,
        cpu_system_ns=26435 * 1000,
        cpu_periods=120, cpu_throttled_periods=31, cpu_throttled_ns=2345678 * 1000,
        mem_cgroup_usage=44326912,
        mem_max_usage=None,  # no memory.peak: a kernel before 5.19
        mem_failcnt=None,  # v2 has none
        mem_rss=2191360, mem_cache=41943040, mem_active_file=131072,
        mem_inactive_file=41811968, mem_mapped_file=0,
        mem_swap=65536,  # memory.swap.current
        mem_pgfault=2254, mem_pgmajfault=0,
        mem_stat=memory_stat(V2_MEMORY_STAT),
        oom_kills=1,  # memory.events oom_kill
        net_interfaces=INTERFACES,
        blk_devices=V2_DEVICES,
    )


def test_v2_memory_peak_where_the_kernel_has_it(tmp_path):
    """memory.peak (kernel 5.19+; written by hand, as the kernel docs describe it) is the v2
    max_usage; no memory.events (an old kernel) leaves oom_kills null, not 0."""
    make_v2(tmp_path / "cgroup", tmp_path / "proc")
    scope = tmp_path / "cgroup" / f"system.slice/docker-{ID}.scope"
    (scope / "memory.peak").write_text("50331648\n")
    (scope / "memory.events").unlink()
    reading = source_for(tmp_path).read(ContainerInfo(ID, "rec", "busybox", pid=PID))
    assert reading.figures["mem_max_usage"] == 50331648
    assert reading.figures["oom_kills"] is None


def test_v2_memory_limit_and_a_limit_above_the_host_memory(tmp_path):
    make_v2(tmp_path / "cgroup", tmp_path / "proc", limit="536870912")
    source = source_for(tmp_path)
    info = ContainerInfo(ID, "rec", "busybox", pid=PID)
    assert source.read(info).figures["mem_limit"] == 536870912
    (tmp_path / "cgroup" / f"system.slice/docker-{ID}.scope" / "memory.max").write_text(
        f"{HOST_MEMORY * 2}\n"
    )
    assert source.read(info).figures["mem_limit"] == HOST_MEMORY


def test_cpu_percent_over_wall_clock_time(tmp_path):
    make_v1(tmp_path / "cgroup", tmp_path / "proc")
    clock = iter([1_000_000_000, 3_000_000_000])
    source = CgroupSource(fake_client({ID: PID}), proc_root=str(tmp_path / "proc"),
                          cgroup_root=str(tmp_path / "cgroup"), clock_ns=lambda: next(clock))
    info = ContainerInfo(ID, "rec", "busybox", pid=PID)
    first = source.read(info)
    usage = tmp_path / "cgroup" / "cpuacct" / "docker" / ID / "cpuacct.usage"
    usage.write_text(f"{44059375 + 1_500_000_000}\n")  # 1.5 s of CPU in 2 s
    assert cpu_percent(first, source.read(info)) == pytest.approx(75.0)


# Finding the process, and containers that go away


def test_pid_from_inspect_once_when_the_listing_has_none(tmp_path):
    make_v1(tmp_path / "cgroup", tmp_path / "proc")
    source = source_for(tmp_path)
    info = ContainerInfo(ID, "rec", "busybox")  # pid 0, as from the listing
    assert source.read(info) is not None
    assert source.read(info) is not None
    assert source._api.inspects == 1  # the pid and the files were remembered


def test_reused_pid_is_not_taken_for_the_container(tmp_path):
    """A pid that now belongs to another process (its cgroup does not name the container) is
    not read; Docker is asked again."""
    make_v1(tmp_path / "cgroup", tmp_path / "proc")
    write(tmp_path / "proc" / "4242" / "cgroup", "0::/user.slice\n")
    source = source_for(tmp_path)
    reading = source.read(ContainerInfo(ID, "rec", "busybox", pid=4242))
    assert reading is not None and reading.figures["pids"] == 1
    assert source._api.inspects == 1


def test_vanished_container_is_none_and_forgotten(tmp_path):
    """The process ended and the cgroup went (the kernel's held cgroup files then answer
    ENODEV, which a recorded tree of regular files cannot: the real one is
    test_vanished_real_container_reads_none)."""
    make_v1(tmp_path / "cgroup", tmp_path / "proc")
    pids = {ID: PID}
    source = source_for(tmp_path, pids)
    info = ContainerInfo(ID, "rec", "busybox")
    assert source.read(info) is not None
    assert source.open_descriptors == 11  # every v1 cgroup file but /proc/<pid>/net/dev
    for directory in [*(tmp_path / "cgroup").glob(f"*/docker/{ID}"),
                      tmp_path / "proc" / str(PID) / "net", tmp_path / "proc" / str(PID)]:
        for file in directory.iterdir():
            if file.is_file():
                file.unlink()
        directory.rmdir()
    del pids[ID]  # Docker: no such container
    assert source.read(info) is None
    assert source.open_descriptors == 0
    inspects = source._api.inspects
    assert source.read(info) is None
    assert source._api.inspects == inspects + 1  # forgotten: Docker is asked again


def test_restarted_container_is_read_from_its_new_process(tmp_path):
    make_v1(tmp_path / "cgroup", tmp_path / "proc")
    pids = {ID: PID}
    source = source_for(tmp_path, pids)
    info = ContainerInfo(ID, "rec", "busybox")
    assert source.read(info).figures["rx_bytes"] == 13345
    for file in (tmp_path / "proc" / str(PID)).rglob("*"):
        if file.is_file():
            file.unlink()
    new_pid = PID + 100
    make_proc(tmp_path / "proc", new_pid, V1_PROC_CGROUP, NET_DEV.replace("12345", "99"))
    pids[ID] = new_pid
    assert source.read(info).figures["rx_bytes"] == 99 + 1000


def test_stopped_container_is_none(tmp_path):
    make_v1(tmp_path / "cgroup", tmp_path / "proc")
    source = source_for(tmp_path, {ID: 0})  # inspect: not running
    assert source.read(ContainerInfo(ID, "rec", "busybox")) is None


def test_cache_is_bounded(tmp_path):
    ids = [uuid.uuid4().hex * 2 for _ in range(3)]
    for n, container_id in enumerate(ids):
        make_v1(tmp_path / "cgroup", tmp_path / "proc", container_id=container_id, pid=100 + n)
    source = source_for(tmp_path, {cid: 100 + n for n, cid in enumerate(ids)}, cache_size=2)
    for container_id in ids:
        assert source.read(ContainerInfo(container_id, "c", "busybox")) is not None
    assert source._api.inspects == 3
    for container_id in ids[1:]:  # the two most recent are remembered
        assert source.read(ContainerInfo(container_id, "c", "busybox")) is not None
    assert source._api.inspects == 3
    assert source.read(ContainerInfo(ids[0], "c", "busybox")) is not None  # the oldest is not
    assert source._api.inspects == 4


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_held_descriptors_are_opened_once_and_closed_on_forget(tmp_path):
    make_v2(tmp_path / "cgroup", tmp_path / "proc")
    source = source_for(tmp_path)
    info = ContainerInfo(ID, "rec", "busybox")
    before = open_fds()
    source.read(info)
    held = source.open_descriptors
    assert held == 8  # the v2 cgroup files of the tree (no memory.peak); not net/dev
    assert open_fds() == before + held
    for _ in range(200):
        source.read(info)
    assert open_fds() == before + held
    source.forget(info.id)
    assert source.open_descriptors == 0 and open_fds() == before


def test_held_files_give_the_figures_read_text_gives(tmp_path):
    """Past the limit of containers with held files, a container is read by open, read and
    close: the same figures, also after its files changed in place."""
    make_v1(tmp_path / "cgroup", tmp_path / "proc")
    held, opened = source_for(tmp_path), source_for(tmp_path, held_limit=0)
    info = ContainerInfo(ID, "rec", "busybox")
    assert held.read(info) == opened.read(info)
    assert held.open_descriptors == 11 and opened.open_descriptors == 0
    directory = tmp_path / "cgroup" / "memory" / "docker" / ID
    (directory / "memory.stat").write_text(V1_MEMORY_STAT.replace("1516", "99999999"))
    (directory / "memory.usage_in_bytes").write_text("1\n")
    first = held.read(info)
    assert first == opened.read(info)
    assert first.figures["mem_pgfault"] == 99999999 and first.figures["mem_cgroup_usage"] == 1


def test_held_files_closed_while_read_elsewhere_are_read_by_open_read_close(tmp_path):
    """A container forgotten (closed) by the loop thread while a pool thread reads it."""
    path = tmp_path / "memory.current"
    path.write_text("1\n")
    held = HeldFiles()
    before = open_fds()
    assert held.read(str(path)) == "1\n" and held.open_count == 1
    held.close()
    assert open_fds() == before and held.open_count == 0
    path.write_text("22\n")
    assert held.read(str(path)) == "22\n" and open_fds() == before


def test_held_files_are_bounded_and_released_with_the_cache(tmp_path):
    ids = [uuid.uuid4().hex * 2 for _ in range(3)]
    for n, container_id in enumerate(ids):
        make_v1(tmp_path / "cgroup", tmp_path / "proc", container_id=container_id, pid=100 + n)
    pids = {cid: 100 + n for n, cid in enumerate(ids)}
    source = source_for(tmp_path, pids, held_limit=1, cache_size=2)
    before = open_fds()
    for container_id in ids[:2]:
        assert source.read(ContainerInfo(container_id, "c", "busybox")) is not None
    assert source.open_descriptors == 11  # one container holds its files, the other not
    assert source.read(ContainerInfo(ids[2], "c", "busybox")) is not None
    # the first was forgotten from the cache of two: its descriptors closed, the third's held
    assert source.open_descriptors == 11 and open_fds() == before + 11
    assert "held open for up to 1 containers" in source.describe()


def test_unreadable_cgroup_is_read_through_the_fallback(tmp_path):
    """The process runs per Docker, but this /proc is not the host's: the fallback answers, and
    without one the error names the container and the path."""
    make_v1(tmp_path / "cgroup", tmp_path / "proc")
    info = ContainerInfo(OTHER_ID, "elsewhere", "busybox")
    pids = {OTHER_ID: 777}
    api_reading = make_reading(1, cpu_usage_ns=2, online_cpus=2, mem_usage=4, mem_limit=5)
    fallback = SimpleNamespace(name="api", read=lambda container: api_reading)
    assert source_for(tmp_path, pids, fallback=fallback).read(info) is api_reading
    with pytest.raises(CgroupUnreadable, match=r"elsewhere.*777"):
        source_for(tmp_path, pids).read(info)


def test_unreadable_reason(tmp_path):
    assert "no readable cgroup" in source_for(tmp_path).unreadable_reason()
    make_v2(tmp_path / "cgroup", tmp_path / "proc")
    assert source_for(tmp_path).unreadable_reason() is None


# The command line


def test_source_cgroup_with_unreadable_root_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        collector_main.main(["--source", "cgroup", "--cgroup-root", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--source cgroup" in error and str(tmp_path) in error


def test_auto_takes_the_fast_path_only_when_readable(tmp_path):
    client = SimpleNamespace(api=SimpleNamespace(api_version="1.41"))
    args = collector_main.build_parser().parse_args(
        ["--proc-root", str(tmp_path / "proc"), "--cgroup-root", str(tmp_path / "cgroup")]
    )
    assert args.source == "auto"
    assert collector_main.choose_source(args, client).name == "api"
    make_v2(tmp_path / "cgroup", tmp_path / "proc")
    assert collector_main.choose_source(args, client).name == "cgroup"
    args.source = "api"
    assert collector_main.choose_source(args, client).name == "api"


# Both paths on the same real containers


MIB = 1024 * 1024


@pytest.fixture(scope="module")
def containers(docker_client):
    """A container spinning one core, one holding 64 MiB in a tmpfs, an idle one."""
    run_label = f"cgroup-agreement-{uuid.uuid4().hex[:8]}"
    commands = {
        "busy": "while :; do :; done",
        "memory": "dd if=/dev/zero of=/data/held bs=1M count=64 2>/dev/null && exec sleep 600",
        "idle": "exec sleep 600",
    }
    started = {}
    try:
        for role, command in commands.items():
            container = docker_client.containers.run(
                IMAGE, ["sh", "-c", command], detach=True, network_mode="none",
                labels={TEST_LABEL: run_label}, name=f"statspout-test-{run_label}-{role}",
                tmpfs={"/data": "size=96m"} if role == "memory" else None,
            )
            started[role] = ContainerInfo(container.id, container.name, IMAGE,
                                          {TEST_LABEL: run_label})
        yield started
    finally:
        ours = {"label": f"{TEST_LABEL}={run_label}"}
        for container in docker_client.containers.list(all=True, filters=ours):
            container.remove(force=True)


@pytest.mark.docker
def test_both_paths_agree_on_real_containers(docker_client, containers):
    api = ApiSource(docker_client)
    fast = CgroupSource(docker_client)
    assert fast.unreadable_reason() is None
    wait_for(lambda: (api.read(containers["memory"]) or make_reading()).figures["mem_usage"]
               >= 64 * MIB, 30, "the memory holder to hold 64 MiB")

    def bracket(info: ContainerInfo) -> tuple[Reading, Reading, Reading]:
        """A fast reading, the API's (taken by the daemon at its next tick), a fast one."""
        before = fast.read(info)
        through_api = api.read(info)
        after = fast.read(info)
        assert None not in (before, through_api, after), info.name
        return before, through_api, after

    def one_round() -> dict[str, tuple[Reading, Reading, Reading]]:
        with ThreadPoolExecutor(len(containers)) as pool:  # every container at the same time
            return dict(zip(containers, pool.map(bracket, containers.values()), strict=True))

    first = one_round()
    time.sleep(2)
    second = one_round()

    for role in containers:
        for before, through_api, after in (first[role], second[role]):
            # Counters: the daemon's reading falls between our two, and the fixed ones agree.
            low, api_figures, high = before.figures, through_api.figures, after.figures
            for counter in ("cpu_usage_ns", "blk_read_bytes", "blk_write_bytes", "rx_bytes",
                            "tx_bytes", "rx_packets", "tx_packets"):
                assert low[counter] <= api_figures[counter] <= high[counter], (role, counter)
            for fixed in ("pids", "mem_limit", "online_cpus"):
                assert high[fixed] == api_figures[fixed], (role, fixed)
            assert abs(high["mem_usage"] - api_figures["mem_usage"]) <= max(
                0.01 * api_figures["mem_usage"], 64 * 1024), (role, after, through_api)
    memory_fast = second["memory"][2].figures["mem_usage"]
    memory_api = second["memory"][1].figures["mem_usage"]
    assert memory_api >= 64 * MIB
    assert abs(memory_fast - memory_api) <= 0.01 * memory_api

    # CPU percent over the same window: the API's from its own system counter, ours over wall
    # time from the reading taken just after the daemon's.
    api_busy = cpu_percent(first["busy"][1], second["busy"][1])
    fast_busy = cpu_percent(first["busy"][2], second["busy"][2])
    assert api_busy is not None and fast_busy is not None
    assert api_busy > 30, f"the busy container only got {api_busy:.1f} % of a core"
    assert abs(api_busy - fast_busy) <= 5, (api_busy, fast_busy)
    idle = cpu_percent(first["idle"][2], second["idle"][2])
    assert idle is not None and idle < 5


@pytest.mark.docker
def test_vanished_real_container_reads_none(docker_client):
    container = docker_client.containers.run(
        IMAGE, ["sleep", "600"], detach=True, network_mode="none",
        labels={TEST_LABEL: f"cgroup-vanish-{uuid.uuid4().hex[:8]}"},
    )
    try:
        fast = CgroupSource(docker_client)
        info = ContainerInfo(container.id, container.name, IMAGE)
        assert fast.read(info) is not None
        assert fast.open_descriptors > 0
        container.kill()
        # the cgroup's removal ends its held files (ENODEV): read as vanished, and closed
        wait_for(lambda: fast.read(info) is None, 30, "the killed container to read None")
        assert fast.open_descriptors == 0
    finally:
        container.remove(force=True)


@pytest.mark.docker
def test_collector_process_publishes_from_cgroup_files(docker_client, containers, tmp_path):
    """The real statspout-collector with --source cgroup: the log says so, and the busy
    container's samples carry a CPU percent computed from two of its readings."""
    log_path = tmp_path / "collector.log"
    with collector_into_socket(["--source", "cgroup", "--interval", "1"],
                               log_path) as (sub, process):
        busy_id = containers["busy"].id
        percents: list[float] = []
        deadline = time.monotonic() + 30
        while len(percents) < 2:
            assert time.monotonic() < deadline, log_path.read_text()
            if not sub.poll(500):
                continue
            for message in wire.decode_all(sub.recv()):
                if isinstance(message, wire.ContainerStats) and message.id == busy_id:
                    if message.cpu_percent is not None:
                        percents.append(message.cpu_percent)
        assert min(percents) > 30, percents
    assert "figures from cgroup files" in log_path.read_text()
    assert process.returncode == 0

