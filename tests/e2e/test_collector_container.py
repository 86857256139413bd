"""The collector as a container, as docs/container.md runs it: the image built from our
Dockerfile (on a base made offline, see support/container_image.py), a non-root user with the
Docker socket's group, the host's /sys/fs/cgroup and /proc mounted read-only. It sends to a
router on this host's 127.0.0.1 (the container shares the host's network only for that), and
must give the right CPU of a busy container with both sources, and follow events. The same
image run by Debian's docker-compose from our docker-compose.yml."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.container_image import REPO, CannotBuild, base_image, collector_image
from support.docker_engine import TEST_LABEL
from support.processes import Process, program
from support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

SPIN = "while :; do :; done"


@pytest.fixture(scope="module")
def image(docker_client) -> str:
    try:
        base = base_image()
    except CannotBuild as exc:
        pytest.skip(f"no base image for the collector container: {exc}")
    return collector_image(base)


@pytest.fixture
def hub(endpoints, run_id, tmp_path) -> Iterator[tuple[str, Process]]:
    """Router and JSON stdout sink on this host's loopback, routing only this test's
    containers; yields the router's input endpoint and the sink."""
    listen, publish = endpoints
    router = Process([program("statspout-router"), "--listen", listen, "--publish", publish,
                      "--control", f"ipc://{tmp_path}/router.ctl",
                      "--include", f"label={TEST_LABEL}={run_id}"])
    sink = Process([program("statspout-sink"), "stdout", "--stdout.format", "json",
                    "--connect", publish])
    try:
        yield listen, sink
    finally:
        sink.stop()
        router.stop()


def docker_gid() -> str:
    return str(os.stat("/var/run/docker.sock").st_gid)


# The documented `docker run` (docs/container.md), with the test's label and name.
def run_collector(image: str, run_id: str, name: str, *args: str) -> str:
    return subprocess.run(
        ["docker", "run", "-d", "--name", name, "--label", f"{TEST_LABEL}={run_id}",
         "--network", "host", "--cgroupns=host", "--group-add", docker_gid(),
         "-v", "/var/run/docker.sock:/var/run/docker.sock",
         "-v", "/sys/fs/cgroup:/host/sys/fs/cgroup:ro", "-v", "/proc:/host/proc:ro",
         image, *args],
        check=True, capture_output=True, text=True).stdout.strip()


def logs(container: str) -> str:
    result = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
    return result.stdout + result.stderr


def remove(container: str) -> None:
    subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def samples(sink: Process, host: str, name: str) -> list[dict]:
    return [m for m in sink.json_lines() if m["kind"] == "stats" and m["host"] == host
            and m["name"] == name and m["cpu_percent"] is not None]


def events(sink: Process, host: str, name: str) -> set[str]:
    return {m["action"] for m in sink.json_lines()
            if m["kind"] == "event" and m["host"] == host and m["name"] == name}


@pytest.mark.parametrize("source", ["cgroup", "api"])
def test_collector_container_measures_and_follows(image, hub, make_container, run_id,
                                                  source) -> None:
    listen, sink = hub
    busy = make_container(SPIN, name=f"half-{run_id}", nano_cpus=500_000_000)  # --cpus 0.5
    host = f"container-{source}-{run_id}"
    collector = run_collector(image, run_id, f"statspout-collector-{source}-{run_id}",
                              "--connect", listen, "--interval", "1", "--host", host,
                              "--source", source)
    try:
        wait_for(lambda: len(samples(sink, host, busy.name)) >= 4, 60,
                 f"samples of the busy container from the {source} source")
        recent = [s["cpu_percent"] for s in samples(sink, host, busy.name)[-3:]]
        assert sum(recent) / len(recent) == pytest.approx(50, abs=15), recent
        later = make_container("sleep 3600", name=f"later-{run_id}")
        wait_for(lambda: "start" in events(sink, host, later.name), 30, "its start event")
        later.stop(timeout=1)
        wait_for(lambda: {"die", "stop"} & events(sink, host, later.name), 30,
                 "its stop event")
        text = logs(collector)
        assert ("figures from cgroup files" if source == "cgroup"
                else "figures from the Docker stats API") in text, text
        user = subprocess.run(["docker", "exec", collector, "id", "-u"], capture_output=True,
                              text=True, check=True).stdout.strip()
        assert user != "0"
    finally:
        remove(collector)


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="Debian's docker-compose is not installed (scripts/test.sh does)")
def test_compose_file_runs_the_collector(image, hub, make_container, run_id, tmp_path) -> None:
    listen, sink = hub
    busy = make_container(SPIN, name=f"spin-{run_id}", nano_cpus=500_000_000)
    host = f"compose-{run_id}"
    # The test's label on what compose starts, in an override file: the compose file is as
    # users get it.
    override = tmp_path / "test-override.yml"
    override.write_text(f'version: "2.4"\nservices:\n  collector:\n    labels:\n'
                        f'      {TEST_LABEL}: "{run_id}"\n')
    project = f"statspout-test-{run_id}"
    env = {**os.environ, "STATSPOUT_IMAGE": image, "STATSPOUT_CONNECT": listen,
           "DOCKER_GID": docker_gid(), "STATSPOUT_COLLECTOR_HOST": host,
           "STATSPOUT_COLLECTOR_INTERVAL": "1"}
    compose = ["docker-compose", "--project-name", project,
               "-f", str(REPO / "docker-compose.yml"), "-f", str(override)]
    try:
        up = subprocess.run([*compose, "up", "-d", "--no-build", "collector"], env=env,
                            capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stderr
        wait_for(lambda: len(samples(sink, host, busy.name)) >= 3, 60,
                 "samples through the compose-run collector")
    finally:
        subprocess.run([*compose, "down", "--timeout", "2"], env=env, capture_output=True,
                       timeout=120)
    assert not Path("/run/no-keys").exists()  # nothing made on the host by the keys default
