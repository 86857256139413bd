"""Records what the daemon sends discovery, into lifecycle_api_1.41.json beside this file.

    .venv/bin/python tests/collector/payloads/record_lifecycle.py

One labelled container (network none) goes through start, rename, pause, unpause, stop and
remove while the events stream is read with the filters the collector uses; the container
listing and the inspect of the running container are recorded too. Recorded on this machine
(Docker 20.10.24, API 1.41, cgroup v1); kept as a file so that the tests need no daemon.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for support
from support.docker_engine import IMAGE, TEST_LABEL

from statspout.collector.discovery import WATCHED_ACTIONS

OUT = Path(__file__).with_name("lifecycle_api_1.41.json")


def main() -> None:
    client = docker.from_env()
    run = uuid.uuid4().hex[:8]
    since = time.time()
    container = client.containers.run(
        IMAGE, ["sleep", "600"], detach=True, network_mode="none",
        labels={TEST_LABEL: f"record-{run}", "app": "web"}, name=f"statspout-record-{run}",
    )
    try:
        listing = [entry for entry in client.api.containers()
                   if entry["Id"] == container.id]
        inspect = client.api.inspect_container(container.id)
        container.rename(f"statspout-record-{run}-renamed")
        container.pause()
        container.unpause()
        container.stop(timeout=1)
        stopped_inspect = client.api.inspect_container(container.id)
    finally:
        container.remove(force=True)
    events: list[dict] = []
    stream = client.api.events(since=since, until=time.time() + 1, decode=True,
                               filters={"type": "container", "event": list(WATCHED_ACTIONS)})
    reader = threading.Thread(target=lambda: events.extend(stream), daemon=True)
    reader.start()
    reader.join(10)
    OUT.write_text(json.dumps({
        "docker": client.version()["Version"],
        "containers": listing,
        "inspect_running": inspect,
        "inspect_stopped": stopped_inspect,
        "events": events,
    }, indent=1, sort_keys=True) + "\n")
    print(f"{len(events)} events, {len(listing)} listed → {OUT}")


if __name__ == "__main__":
    main()
