"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

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
