"""Many hosts into one router across real network boundaries.

Four network namespaces made by the test, joined by a bridge on 10.250.0.0/24 (addresses that
exist only inside them): a real collector on "alpha" sampling a real container, a synthetic
collector on "beta", the router on "hub", a sink worker on "sinkhost". Run once without CURVE
(--insecure, the router bound to its namespace's address) and once with CURVE.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from support.netns import PUBLISH_ENV, Lan, netns_unavailable, publish_argv
from support.processes import Process, program
from support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

HOSTS = ["alpha", "beta", "hub", "sinkhost"]
INPUT_PORT, OUTPUT_PORT = 5556, 5557
INTERVAL = 1.0


@pytest.fixture(scope="module")
def lan():
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    with Lan(HOSTS) as lan:
        yield lan


@pytest.mark.parametrize("curve", [False, True], ids=["insecure", "curve"])
def test_two_hosts_feed_one_router_and_a_sink_on_a_third(
    lan: Lan, curve: bool, tmp_path: Path, make_container, run_id: str
) -> None:
    hub = lan.addresses["hub"]
    listen, publish = f"tcp://{hub}:{INPUT_PORT}", f"tcp://{hub}:{OUTPUT_PORT}"
    control = f"ipc://{tmp_path}/router.ctl"  # a file: reachable from outside the namespace

    security_args: list[str] = ["--insecure"]
    client: dict[str, dict[str, str]] = {name: {} for name in ("alpha", "beta", "sink")}
    if curve:
        keys, authorized = tmp_path / "keys", tmp_path / "authorized"
        subprocess.run([program("statspout-keygen"), "--dir", str(keys), "router", "alpha",
                        "beta", "sink"], check=True, capture_output=True, timeout=30)
        authorized.mkdir()
        for name in ("alpha", "beta", "sink"):
            shutil.copy(keys / f"{name}.key", authorized)
            client[name] = {"--curve-secret-key": str(keys / f"{name}.key_secret"),
                            "--curve-server-key": str(keys / "router.key")}
        security_args = ["--curve-secret-key", str(keys / "router.key_secret"),
                         "--authorized-keys", str(authorized)]

    def flags(name: str) -> list[str]:
        return [part for item in client[name].items() for part in item]

    def start_router() -> Process:
        router = Process(lan.exec_argv("hub", [
            program("statspout-router"), "--listen", listen, "--publish", publish,
            "--control", control, "--include", f"label=statspout.test={run_id}",
            "--include", "host=beta", *security_args]))
        wait_for(lambda: "routing from" in router.log() or router.popen.poll() is not None,
                 15, "the router to start in its namespace")
        assert router.popen.poll() is None, router.log()
        return router

    container = make_container()
    alpha = Process(lan.exec_argv("alpha", [
        program("statspout-collector"), "--connect", listen, "--host", "alpha",
        "--interval", str(INTERVAL), *flags("alpha")]))
    beta = Process(lan.exec_argv("beta", publish_argv(
        listen, "beta", names="b1,b2", interval=str(INTERVAL),
        **{k.lstrip("-").replace("-", "_"): v for k, v in client["beta"].items()})),
        env=PUBLISH_ENV)
    sink = Process(lan.exec_argv("sinkhost", [
        program("statspout-sink"), "stdout", "--stdout.format", "json", "--connect", publish,
        *flags("sink")]))
    router = start_router()
    try:
        if not curve:
            assert any("WARNING" in line and "--insecure" in line for line in router.stderr)

        def seen() -> set[tuple[str, str]]:
            return {(m["host"], m["name"]) for m in sink.json_lines() if m["kind"] == "stats"}

        expected = {("alpha", container.name), ("beta", "b1"), ("beta", "b2")}
        wait_for(lambda: expected <= seen(), 30, f"{expected} at the sink on sinkhost")
        assert all(m["host"] in ("alpha", "beta") for m in sink.json_lines())
        status = subprocess.run([program("statspout-router"), "--status", "--control", control],
                                capture_output=True, text=True, timeout=30)
        print(status.stdout)
        assert status.returncode == 0 and "alpha" in status.stdout and "beta" in status.stdout

        # The router restarts; collectors and sink stay up and are fed again.
        router.stop()
        before = len(sink.json_lines())
        router = start_router()
        wait_for(lambda: expected <= {(m["host"], m["name"])
                                      for m in sink.json_lines()[before:]}, 30,
                 "both hosts at the sink after the router restart")
        assert alpha.popen.poll() is None and beta.popen.poll() is None
        assert sink.popen.poll() is None
    finally:
        for process in (alpha, beta, sink, router):
            process.stop()
    print("\n".join(line for line in router.stderr if "collectors [" in line))
