"""A Docker engine and the local test image, made ready for the tests.

No registry is reachable, so the image is a root filesystem of Debian's busybox-static
imported with ``docker import``. Runnable as ``python tests/support/docker_engine.py`` so that
the test script prepares both before pytest starts.
"""

from __future__ import annotations

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


def engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def ensure_engine() -> None:
    """Start dockerd when no engine answers, and wait until it does."""
    if engine_answers():
        return
    if shutil.which("dockerd") is None:
        raise RuntimeError("no Docker engine answers and dockerd is not installed (docker.io)")
    log = open("/tmp/statspout-dockerd.log", "ab")  # noqa: SIM115 - stays open for dockerd
    subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + ENGINE_DEADLINE_S
    while not engine_answers():
        if time.monotonic() > deadline:
            raise RuntimeError("dockerd did not answer within 60 s; see /tmp/statspout-dockerd.log")
        time.sleep(0.5)


def ensure_image() -> str:
    """Import the busybox test image unless it is there already; returns its tag."""
    present = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True)
    if present.returncode == 0:
        return IMAGE
    if not BUSYBOX.exists():
        raise RuntimeError("/bin/busybox is missing: install Debian's busybox-static")
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp, "rootfs.tar")
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
        subprocess.run(
            ["docker", "import", "-c", 'CMD ["/bin/sh"]', str(archive), IMAGE],
            check=True, capture_output=True,
        )
    return IMAGE


if __name__ == "__main__":
    ensure_engine()
    print(f"Docker engine ready; test image {ensure_image()}")
