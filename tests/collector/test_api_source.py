"""The Engine API source against the real daemon: a container removed while the daemon reads
its statistics is ``vanished`` (read gives None), not a failed sample."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import docker
import pytest
from support.docker_engine import TEST_LABEL, ensure_engine, ensure_image

from statspout.collector.api_source import ApiSource
from statspout.collector.discovery import ContainerInfo, container_info
from statspout.collector.figures import Reading

# Before API 1.41 there is no one-shot: the daemon takes two readings a second apart for each
# call, which leaves the time to remove the container in the middle of the request.
TWO_READING_API = "1.40"


@pytest.fixture()
def client() -> Iterator[docker.DockerClient]:
    ensure_engine()
    connection = docker.DockerClient(version=TWO_READING_API)
    try:
        yield connection
    finally:
        connection.close()


def start_container(client: docker.DockerClient) -> tuple[str, ContainerInfo]:
    container = client.containers.run(ensure_image(), ["sleep", "60"], detach=True,
                                      network_mode="none", labels={TEST_LABEL: "api-source"})
    return container.id, container_info(client.api.inspect_container(container.id))


def test_a_container_removed_mid_request_is_vanished_not_a_failure(
    client: docker.DockerClient,
) -> None:
    container_id, info = start_container(client)
    source = ApiSource(client)
    outcome: dict[str, object] = {}

    def read() -> None:
        try:
            outcome["reading"] = source.read(info)
        except Exception as exc:  # what the loop would count as a failed sample
            outcome["error"] = exc

    reader = threading.Thread(target=read)
    try:
        reader.start()
        time.sleep(0.3)  # the daemon is between its two readings (about a second apart)
        client.api.remove_container(container_id, force=True)
        reader.join(30)
    finally:
        try:
            client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
    assert not reader.is_alive()
    assert "error" not in outcome, repr(outcome.get("error"))
    assert outcome["reading"] is None  # the loop counts None as vanished


def test_a_running_container_still_gives_a_reading_through_the_two_reading_call(
    client: docker.DockerClient,
) -> None:
    container_id, info = start_container(client)
    try:
        reading = ApiSource(client).read(info)
    finally:
        client.api.remove_container(container_id, force=True)
    assert isinstance(reading, Reading)
