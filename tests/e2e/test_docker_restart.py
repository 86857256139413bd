"""The Docker daemon goes away and comes back: the collector reconnects by itself, resumes the
events stream, lists again, and follows what changed meanwhile. A private daemon of the test's
own is stopped and started, never the shared one."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from support.docker_engine import IMAGE, TEST_LABEL, PrivateEngine, ensure_image
from support.processes import Pipeline
from support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.e2e]


@pytest.fixture
def engine(docker_client):
    # A short folder: the daemon's unix socket path must stay under 108 bytes.
    folder = Path(tempfile.mkdtemp(prefix="statspout-dockerd-"))
    engine = PrivateEngine(folder)
    engine.start()
    try:
        ensure_image(engine.env)
        yield engine
    finally:
        # Its containers, images and state all live in the folder: stopping the daemon
        # stops them, removing the folder removes them.
        engine.stop()
        shutil.rmtree(folder, ignore_errors=True)


def run(engine: PrivateEngine, name: str, run_id: str) -> str:
    return engine.docker("run", "-d", "--network", "none", "--label", f"{TEST_LABEL}={run_id}",
                         "--name", name, IMAGE, "sleep", "3600")


def test_collector_follows_a_daemon_restart(engine, endpoints, run_id):
    before = f"before-{run_id}"
    run(engine, before, run_id)
    with Pipeline(endpoints, run_id, collector_args=["--source", "api"],
                  collector_env=engine.env) as pipeline:
        wait_for(lambda: pipeline.samples(before), 20, "samples from the private daemon")

        engine.stop()  # its containers die with it (no live-restore)
        wait_for(lambda: "events stream lost" in pipeline.collector.log(), 20,
                 "the collector to notice the daemon is gone")
        engine.start()
        wait_for(lambda: any(e["action"] == "stop" for e in pipeline.events(before)), 30,
                 "a stop event for the container that died with the daemon")

        after = f"after-{run_id}"
        run(engine, after, run_id)
        wait_for(lambda: len(pipeline.samples(after)) >= 2, 30,
                 "samples of a container started after the restart")
        assert pipeline.collector.popen.poll() is None, "the collector exited"
