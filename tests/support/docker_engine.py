"""A Docker engine and the local test image, made ready for the tests.

No registry is reachable, so the image is a root filesystem of Debian's busybox-static
imported with ``docker import``. Runnable as ``python tests/support/docker_engine.py`` so that
the test script prepares both before pytest starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

IMAGE = "statspout-test/busybox:1"
TEST_LABEL = "statspout.test"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "sleep", "dd", "head", "cat", "yes", "true", "mkdir")
ENGINE_DEADLINE_S = 60


def engine_answers(env: dict[str, str] | None = None) -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, env=env).returncode == 0


def ensure_engine() -> None:
    """Start dockerd when no engine answers, and wait until it does."""
    if engine_answers():
        return
    if shutil.which("dockerd") is None:
        raise RuntimeError("no Docker engine answers and dockerd is not installed (docker.io)")
    log = open("/tmp/statspout-dockerd.log", "ab")
    subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
    wait_for_engine(None, "/tmp/statspout-dockerd.log")


def wait_for_engine(env: dict[str, str] | None, log: str) -> None:
    deadline = time.monotonic() + ENGINE_DEADLINE_S
    while not engine_answers(env):
        if time.monotonic() > deadline:
            raise RuntimeError(f"dockerd did not answer within {ENGINE_DEADLINE_S} s; see {log}")
        time.sleep(0.5)


def ensure_image(env: dict[str, str] | None = None) -> str:
    """Import the busybox test image into the engine unless it is there; returns its tag."""
    present = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, env=env)
    if present.returncode == 0:
        return IMAGE
    with tempfile.TemporaryDirectory() as tmp:
        archive = write_rootfs(Path(tmp, "rootfs.tar"))
        subprocess.run(
            ["docker", "import", "-c", 'CMD ["/bin/sh"]', str(archive), IMAGE],
            check=True, capture_output=True, env=env,
        )
    return IMAGE


def write_rootfs(archive: Path) -> Path:
    """The test image's root filesystem as a tar: busybox-static and its applets."""
    if not BUSYBOX.exists():
        raise RuntimeError("/bin/busybox is missing: install Debian's busybox-static")
    with tarfile.open(archive, "w") as tar:
        for folder in ("bin", "tmp", "proc", "sys", "dev", "etc", "mem"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return archive


class PrivateEngine:
    """A second dockerd of the test's own (own socket, data and state folders, no networking),
    so that a test can stop and restart a daemon without touching the one everyone uses."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}
        self._process: subprocess.Popen | None = None
        (folder / "daemon.json").write_text("{}")

    def start(self) -> None:
        log = open(self.folder / "dockerd.log", "ab")
        self._process = subprocess.Popen(
            ["dockerd", "--host", f"unix://{self.socket}", "--data-root", str(self.folder / "data"),
             "--exec-root", str(self.folder / "exec"), "--pidfile", str(self.folder / "pid"),
             "--config-file", str(self.folder / "daemon.json"),
             "--bridge", "none", "--iptables=false", "--ip6tables=false"],
            stdout=log, stderr=log, start_new_session=True,
        )
        wait_for_engine(self.env, str(self.folder / "dockerd.log"))

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(60)
        self._process = None

    def docker(self, *args: str) -> str:
        return subprocess.run(["docker", *args], env=self.env, check=True, capture_output=True,
                              text=True).stdout.strip()


if __name__ == "__main__":
    ensure_engine()
    print(f"Docker engine ready; test image {ensure_image()}")
