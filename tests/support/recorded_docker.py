"""A stand-in for the Docker client, answering from what the real daemon sent once
(tests/collector/payloads/lifecycle_api_1.41.json, recorded by record_lifecycle.py there)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import docker.errors

PAYLOADS = Path(__file__).parents[1] / "collector" / "payloads"


def load_lifecycle() -> dict[str, Any]:
    return json.loads((PAYLOADS / "lifecycle_api_1.41.json").read_text())


def load_engine() -> dict[str, Any]:
    """/version and /info of this machine's daemon (the fields the collector reads, and a few)."""
    return json.loads((PAYLOADS / "engine_docker_api_1.41.json").read_text())


class RecordedDockerApi:
    """Answers the requests discovery makes with recorded payloads; the tests change
    ``listing`` and ``inspects`` to play what the daemon would say next."""

    def __init__(self, listing: list[dict[str, Any]], inspects: dict[str, dict[str, Any]]) -> None:
        self.listing = listing
        self.inspects = inspects
        self.requests: list[str] = []

    def containers(self, all: bool = False) -> list[dict[str, Any]]:
        self.requests.append("containers all" if all else "containers")
        return copy.deepcopy(self.listing)

    def version(self) -> dict[str, Any]:
        self.requests.append("version")
        return load_engine()["version"]

    def info(self) -> dict[str, Any]:
        self.requests.append("info")
        return load_engine()["info"]

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        self.requests.append(f"inspect {container_id[:12]}")
        if container_id not in self.inspects:
            raise docker.errors.NotFound(f"No such container: {container_id}")
        return copy.deepcopy(self.inspects[container_id])


class RecordedDockerClient:
    """Stand-in for docker.DockerClient: what Collector and discovery use of it (``api``,
    ``close``)."""

    def __init__(self, api: RecordedDockerApi) -> None:
        self.api = api
        self.closed = False

    def close(self) -> None:
        self.closed = True
