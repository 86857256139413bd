"""statspout-top behind CURVE: with its own authorized key it sees the fleet; with a key the
router does not know it gets nothing and says so. Real router, a synthetic collector process."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from support.netns import PUBLISH_ENV, publish_argv
from support.processes import Process, program
from support.waiting import wait_for

pytestmark = pytest.mark.e2e


def once(publish: str, keys: Path, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [program("statspout-top"), "--connect", publish, "--once", "--json", "--wait", "2",
         "--curve-secret-key", str(keys / f"{name}.key_secret"),
         "--curve-server-key", str(keys / "router.key")],
        capture_output=True, text=True, timeout=30)


def test_once_over_curve_and_an_unknown_key_gets_nothing(tmp_path, endpoints, run_id):
    keys, authorized = tmp_path / "keys", tmp_path / "authorized"
    subprocess.run([program("statspout-keygen"), "--dir", str(keys), "router", "feeder", "top",
                    "stranger"], check=True, capture_output=True)
    authorized.mkdir()
    for name in ("feeder", "top"):
        shutil.copy(keys / f"{name}.key", authorized)
    listen, publish = endpoints
    router = Process([program("statspout-router"), "--listen", listen, "--publish", publish,
                      "--control", f"ipc:///tmp/statspout-top-{run_id}.ctl",
                      "--curve-secret-key", str(keys / "router.key_secret"),
                      "--authorized-keys", str(authorized)])
    feeder = Process(publish_argv(listen, "curve-host", names="a,b", interval="0.2",
                                  curve_secret_key=str(keys / "feeder.key_secret"),
                                  curve_server_key=str(keys / "router.key")), env=PUBLISH_ENV)
    try:
        wait_for(lambda: "routing from" in router.log(), 15, "the router to start")
        allowed = once(publish, keys, "top")
        refused = once(publish, keys, "stranger")
    finally:
        feeder.stop()
        router.stop()
    assert allowed.returncode == 0, allowed.stderr
    snapshot = json.loads(allowed.stdout)
    assert sorted(c["name"] for c in snapshot["containers"]) == ["a", "b"]
    assert snapshot["hosts"][0]["host"] == "curve-host"
    assert refused.returncode == 1
    assert "no message from the router" in refused.stderr
