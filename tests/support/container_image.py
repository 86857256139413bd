"""The collector's container image, built here without any registry.

No registry is reachable, so ``python:3.12-slim`` (the Dockerfile's default BASE) cannot be
pulled. The base is made the way Debian makes its own images: ``debootstrap --variant=minbase``
of this machine's release from the mirror apt is configured with, plus python3 and
python3-venv, imported with ``docker import``. It is tagged and kept, so a run pays for it once
(about a minute). Our image is then built from the repository's Dockerfile with
``--build-arg BASE=…`` and the wheels of statspout and its dependencies built on this machine
(pip as configured here), so the build itself reaches no index.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE_REPOSITORY = "statspout-test/debian-python"
IMAGE = "statspout-test/collector:1"
# The Python of the base must take the wheels built here (same minor version): debootstrap the
# release this machine runs.
PACKAGES = ("python3", "python3-venv")


class CannotBuild(RuntimeError):
    """The base image cannot be made here; the text says why."""


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def debian_release() -> str:
    text = Path("/etc/os-release").read_text()
    found = re.search(r"^VERSION_CODENAME=(\w+)", text, re.MULTILINE)
    if not found:
        raise CannotBuild("/etc/os-release names no VERSION_CODENAME: not a Debian release")
    return found.group(1)


def debian_mirror() -> str:
    """The Debian mirror apt uses here (deb822 .sources or the one-line format)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for uri in re.findall(r"^URIs:\s*(\S+)", path.read_text(), re.MULTILINE):
            if "security" not in uri:
                return uri
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        for line in listing.read_text().splitlines():
            fields = line.split()
            if fields[:1] == ["deb"] and "security" not in line:
                return next(f for f in fields[1:] if "://" in f)
    raise CannotBuild("no Debian mirror in /etc/apt/sources.list(.d)")


def base_image() -> str:
    """The tag of the base image, made with debootstrap when it is not there yet."""
    release = debian_release()
    tag = f"{BASE_REPOSITORY}:{release}"
    if image_exists(tag):
        return tag
    if shutil.which("debootstrap") is None:
        raise CannotBuild("debootstrap is not installed (scripts/test.sh installs it)")
    root = Path(tempfile.mkdtemp(prefix="statspout-debootstrap-"))
    started = time.monotonic()
    try:
        made = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", release,
             str(root), debian_mirror()],
            capture_output=True, text=True, timeout=900,
        )
        if made.returncode != 0:
            raise CannotBuild(f"debootstrap failed: {made.stdout[-800:]}{made.stderr[-800:]}")
        subprocess.run(["rm", "-rf", str(root / "var/cache/apt/archives"),
                        str(root / "var/lib/apt/lists")], check=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, check=True,
                       capture_output=True)
        tar.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"base image {tag} made in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return tag


def collector_image(base: str) -> str:
    """Our image built from the Dockerfile on ``base``, from wheels built here."""
    with tempfile.TemporaryDirectory(prefix="statspout-image-") as folder:
        context = Path(folder)
        shutil.copy(REPO / "Dockerfile", context / "Dockerfile")
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
             str(REPO), "-w", str(context / "wheels")],
            check=True, capture_output=True, timeout=600,
        )
        built = subprocess.run(
            # No network in the build: the wheels are there, and nothing may be fetched.
            ["docker", "build", "-q", "--network", "none", "--build-arg", f"BASE={base}",
             "-t", IMAGE, str(context)],
            capture_output=True, text=True, timeout=900,
        )
        if built.returncode != 0:
            raise AssertionError(f"docker build failed:\n{built.stdout}\n{built.stderr}")
    return IMAGE


if __name__ == "__main__":
    print(collector_image(base_image()))
