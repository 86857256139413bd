"""What the real collector asks the real Docker daemon while it samples: counted by a Unix
socket in front of the daemon's. No inspect per sample on either path, while a state message
of every container still goes out every interval."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import zmq
from support.docker_engine import IMAGE, TEST_LABEL
from support.processes import collector_into_socket

from statspout import wire

DOCKER_SOCKET = "/var/run/docker.sock"
REQUEST_LINE = re.compile(rb"(GET|POST|HEAD|PUT|DELETE) (/[^ ?]*)[^ ]* HTTP/1\.[01]\r\n")
API_VERSION = re.compile(r"^/v[0-9.]+")
SAMPLES_WATCHED = 6  # per container, after the collector has sampled each twice


class CountingDockerProxy:
    """Passes every connection through to the daemon's socket and notes each request as
    "METHOD /path" (without the API version and the query)."""

    def __init__(self, path: Path, upstream: str = DOCKER_SOCKET) -> None:
        self.path, self._upstream = path, upstream
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # closed
                return
            daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            daemon.connect(self._upstream)
            threading.Thread(target=self._pipe, args=(client, daemon, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(daemon, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, requests: bool) -> None:
        pending = b""
        try:
            while data := source.recv(65536):
                target.sendall(data)
                if requests:
                    pending += data
                    for match in REQUEST_LINE.finditer(pending):
                        path = API_VERSION.sub("", match[2].decode())
                        with self._lock:
                            self.requests.append(f"{match[1].decode()} {path}")
                    end = pending.rfind(b"\r\n")
                    pending = (pending if end < 0 else pending[end + 2:])[-8192:]
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def count(self, method: str, pattern: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if re.fullmatch(f"{method} {pattern}", r))

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def sleepers(docker_client: docker.DockerClient) -> Iterator[list[str]]:
    label = {TEST_LABEL: f"requests-{uuid.uuid4().hex[:8]}"}
    made = [docker_client.containers.run(IMAGE, ["sleep", "600"], detach=True,
                                         network_mode="none", labels=label) for _ in range(2)]
    try:
        yield [container.id for container in made]
    finally:
        for container in made:
            container.remove(force=True)


@pytest.mark.docker
@pytest.mark.parametrize("source, api_mode", [("api", "poll"), ("api", "stream"),
                                              ("cgroup", "auto")])
def test_no_inspect_per_sample(sleepers, tmp_path, source, api_mode):
    proxy = CountingDockerProxy(tmp_path / "docker.sock")
    log_path = tmp_path / "collector.log"
    samples = dict.fromkeys(sleepers, 0)
    states = dict.fromkeys(sleepers, 0)

    def receive_until(sub: zmq.Socket, process: subprocess.Popen, enough: int) -> None:
        deadline = time.monotonic() + 60
        while min(samples.values()) < enough:
            assert time.monotonic() < deadline and process.poll() is None, log_path.read_text()
            if not sub.poll(500):
                continue
            for message in wire.decode_all(sub.recv()):  # a batch's messages, or one
                if isinstance(message, wire.ContainerStats) and message.id in samples:
                    samples[message.id] += 1
                elif isinstance(message, wire.ContainerState) and message.id in states:
                    states[message.id] += 1

    def asked(method: str, what: str) -> int:
        ids = "|".join(sleepers)
        return proxy.count(method, f"/containers/({ids})/{what}")

    try:
        with collector_into_socket(
                ["--source", source, "--api-mode", api_mode, "--interval", "1"], log_path,
                env={**os.environ, "DOCKER_HOST": f"unix://{proxy.path}"}) as (sub, process):
            receive_until(sub, process, 2)
            inspects, stats_calls = asked("GET", "json"), asked("GET", "stats")
            infos = proxy.count("GET", "/info")
            states_before = dict(states)
            receive_until(sub, process, 2 + SAMPLES_WATCHED)
    finally:
        proxy.close()
    # ≥ SAMPLES_WATCHED samples and intervals of each container: not one inspect of them
    assert asked("GET", "json") == inspects, proxy.requests
    assert proxy.count("GET", "/info") - infos <= 1  # every 60 s, not every interval
    for container_id in sleepers:  # still a state message of each every interval
        assert states[container_id] - states_before[container_id] >= SAMPLES_WATCHED - 1
    watched = sum(samples.values()) - 2 * len(sleepers)
    if api_mode == "poll":  # one stats request per sample
        assert asked("GET", "stats") - stats_calls >= watched - len(sleepers)
    elif source == "api":  # one stream per container, opened before: none per sample
        assert asked("GET", "stats") == stats_calls == len(sleepers)
    else:
        assert asked("GET", "stats") == stats_calls == 0
