"""Docker containers' own cgroup v1 files, read raw: what the figure tests compare with."""

from __future__ import annotations

import os

import pytest

from statspout.collector.cgroup_files import read_text

CGROUP = "/sys/fs/cgroup"

# The figure tests read the raw figures from cgroup v1 files under /sys/fs/cgroup/*/docker.
needs_docker_cgroup_v1 = pytest.mark.skipif(
    not os.path.isdir(os.path.join(CGROUP, "memory", "docker")),
    reason="reads the raw figures from cgroup v1 files under /sys/fs/cgroup/*/docker")


def cgroup_file(controller: str, container_id: str, name: str) -> str:
    """One file of a container's cgroup under ``controller``, whole."""
    return read_text(os.path.join(CGROUP, controller, "docker", container_id, name))
