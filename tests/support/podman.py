"""A Podman engine of the test's own: ``podman system service`` on a socket in a temporary
folder (rootful, its own storage), with the test image imported, removed with everything in it.

The collector talks to it exactly as to Docker, through ``DOCKER_HOST=unix://…/podman.sock``.
This sandbox refuses Podman's default ulimits (``RLIMIT_NOFILE`` above the hard limit), so the
service runs with a containers.conf of ``default_ulimits = []``; there is no systemd, hence the
cgroupfs manager and the file events logger.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.docker_engine import IMAGE, write_rootfs

CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
SERVICE_DEADLINE_S = 30


class PodmanEngine:
    """Podman's Docker-compatible API on ``self.socket``; ``podman()`` runs the CLI on the same
    storage."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "podman.sock"
        (folder / "containers.conf").write_text(CONTAINERS_CONF)
        self._env = {**os.environ, "CONTAINERS_CONF": str(folder / "containers.conf")}
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}
        self._global = ["--root", str(folder / "root"), "--runroot", str(folder / "run"),
                        "--tmpdir", str(folder / "tmp"), "--storage-driver", "vfs"]
        self._service: subprocess.Popen | None = None

    def podman(self, *args: str) -> str:
        return subprocess.run(["podman", *self._global, *args], env=self._env, check=True,
                              capture_output=True, text=True, timeout=120).stdout.strip()

    def start(self) -> None:
        self.start_service()
        write_rootfs(self.folder / "rootfs.tar")
        self.podman("import", "--change", 'CMD ["/bin/sh"]', str(self.folder / "rootfs.tar"),
                    IMAGE)

    def start_service(self) -> None:
        self.socket.unlink(missing_ok=True)  # left behind by a killed service
        log = open(self.folder / "service.log", "ab")
        self._service = subprocess.Popen(
            ["podman", *self._global, "system", "service", "--time=0", f"unix://{self.socket}"],
            env=self._env, stdout=log, stderr=log, start_new_session=True,
        )
        deadline = time.monotonic() + SERVICE_DEADLINE_S
        while not self.socket.exists():
            if self._service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"podman system service did not start; see {log.name}")
            time.sleep(0.2)

    def kill_service(self) -> None:
        """Kill the API service as a crash would; the containers keep running (conmon)."""
        if self._service is not None:
            self._service.kill()
            self._service.wait()

    def stop(self) -> None:
        """Remove every container, stop the service, delete the storage."""
        try:
            self.podman("rm", "--all", "--force", "--time", "0")
        except subprocess.CalledProcessError:
            pass  # the service may already be gone; the storage goes below anyway
        if self._service is not None and self._service.poll() is None:
            self._service.terminate()
            try:
                self._service.wait(30)
            except subprocess.TimeoutExpired:
                self._service.kill()
                self._service.wait()
        self._service = None
        try:
            self.podman("system", "reset", "--force")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


def podman_available() -> bool:
    return shutil.which("podman") is not None


@contextmanager
def running_podman(folder: Path) -> Iterator[PodmanEngine]:
    engine = PodmanEngine(folder)
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()
