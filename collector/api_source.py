"""Readings through the Docker Engine API: ``GET /containers/{id}/stats``.

Without streaming, the daemon takes two samples a second apart for every call, so 50
containers would cost 50 seconds one after the other. We ask for ``one-shot`` (API ≥ 1.41): a
single sample with no previous one, and compute CPU percent from our own previous reading.
The calls run concurrently, one connection each, so a cycle costs about one daemon tick.
"""

from __future__ import annotations

import docker
import docker.errors
from docker.utils import version_gte

from statspout.collector.discovery import ContainerInfo
from statspout.collector.figures import Reading, reading_from_api

ONE_SHOT_API = "1.41"


class ApiSource:
    name = "api"
    concurrent = True  # every read waits on the daemon

    def __init__(self, client: docker.DockerClient) -> None:
        self._api = client.api
        self._one_shot = version_gte(self._api.api_version, ONE_SHOT_API) or None

    def read(self, container: ContainerInfo) -> Reading | None:
        """One reading; None when the container vanished or stopped meanwhile."""
        try:
            payload = self._api.stats(container.id, stream=False, one_shot=self._one_shot)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # "container is not running"
                return None
            raise
        except ValueError:
            # A container removed while the daemon reads it: the daemon ends the answer with
            # an empty body (200, no JSON). Vanished, if the daemon agrees it is gone.
            if not self._still_running(container.id):
                return None
            raise
        return reading_from_api(payload)

    def _still_running(self, container_id: str) -> bool:
        try:
            state = self._api.inspect_container(container_id).get("State") or {}
        except docker.errors.NotFound:
            return False
        return bool(state.get("Running"))

    def forget(self, container_id: str) -> None:
        """Nothing is kept per container."""
