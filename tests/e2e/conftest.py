"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace

import docker
import pytest


@pytest.fixture
def internal_network(
    docker_client: docker.DockerClient,
) -> Iterator[docker.models.networks.Network]:
    network = docker_client.networks.create(f"statspout-test-{uuid.uuid4().hex[:8]}",
                                            internal=True, labels={"statspout.test": "figures"})
    yield network
    network.reload()
    for container in network.containers:  # removed by make_container after this
        network.disconnect(container, force=True)
    network.remove()


# The containers that make each figure of issue 10 happen, by kind.
FIGURE_KINDS = ("throttled", "cache", "unhealthy", "restarting", "oomkilled", "oomchild", "net")
_OOM_LIMITS = {"mem_limit": "16m", "memswap_limit": "16m"}
# Allocates 64 MB under a 16 MB limit without swap: the kernel's OOM killer ends the shell (or,
# now and then, head: hence the loop in the container that must die of it).
OOM_SHELL = "x=$(head -c 67108864 /dev/urandom)"
# The child that must be the OOM killer's only victims: while the first victim frees its memory,
# head's pipe writes can ask for more and the kernel picks a second victim among equals; with the
# container's own sleep as one of them (seen on a loaded machine: "Killed process (sleep)" in the
# kernel log), the container died with the child. A raised oom_score_adj (allowed unprivileged)
# makes the shell and head the first choices, always.
OOM_CHILD_SHELL = f"echo 1000 > /proc/self/oom_score_adj; {OOM_SHELL}"


@dataclass
class FigureContainers:
    """One container per figure kind, named ``<kind>-<run id>``."""

    names: dict[str, str]
    containers: SimpleNamespace  # by kind: containers.throttled, containers.cache, …

    def oom_a_child(self) -> None:
        """A child of the "oomchild" container OOM-killed: Docker's oom event for it."""
        self.containers.oomchild.exec_run(["sh", "-c", OOM_CHILD_SHELL])


@pytest.fixture
def figure_containers(make_container, run_id, internal_network) -> FigureContainers:
    names = {kind: f"{kind}-{run_id}" for kind in FIGURE_KINDS}
    containers = SimpleNamespace(
        # A busy loop under --cpus 0.2: throttled.
        throttled=make_container("while :; do :; done", name=names["throttled"],
                                 nano_cpus=200_000_000),
        # 48 MiB written to its own filesystem: page cache.
        cache=make_container("dd if=/dev/zero of=/tmp/fill bs=1M count=48 && sleep 3600",
                             name=names["cache"]),
        unhealthy=make_container("sleep 3600", name=names["unhealthy"], healthcheck={
            "test": ["CMD-SHELL", "exit 1"], "interval": 1_000_000_000, "retries": 2}),
        restarting=make_container(
            "sleep 2; exit 3", name=names["restarting"],
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 2}),
        oomkilled=make_container(f"while :; do {OOM_SHELL}; done", name=names["oomkilled"],
                                 **_OOM_LIMITS),
        # Its child is OOM-killed by oom_a_child(), once the collector follows it.
        oomchild=make_container("sleep 3600", name=names["oomchild"], **_OOM_LIMITS),
        net=make_container("sleep 3600", name=names["net"], network_mode=internal_network.name),
    )
    return FigureContainers(names, containers)
