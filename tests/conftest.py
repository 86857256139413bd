"""Fixtures shared by every test: a Docker engine, the test image, labelled test containers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import docker
import pytest
from support import docker_engine
from support.ports import free_port


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    docker_engine.ensure_engine()
    docker_engine.ensure_image()
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def run_id() -> str:
    """A value for the test label, unique to this test, so routers can select our containers."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def make_container(
    docker_client: docker.DockerClient, run_id: str
) -> Iterator[Callable[..., docker.models.containers.Container]]:
    """Start a test container: no network (or the internal network_mode a test made),
    labelled with this test's run id, removed after."""
    made = []

    def make(command: str = "sleep 3600", **options) -> docker.models.containers.Container:
        labels = {docker_engine.TEST_LABEL: run_id, **options.pop("labels", {})}
        container = docker_client.containers.run(
            docker_engine.IMAGE, ["sh", "-c", command], detach=True,
            network_mode=options.pop("network_mode", "none"), labels=labels, **options,
        )
        made.append(container)
        return container

    yield make
    for container in made:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture(autouse=True)
def own_state_home(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Sink processes of a test keep their checkpoints (docs/reliability.md) in a folder of
    that test, not in the user's ~/.local/state, where another test's would be found."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state-home")))


@pytest.fixture
def endpoints() -> tuple[str, str]:
    """A fresh (router input, router output) pair of loopback endpoints."""
    return f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
