"""The repository's supervisord.conf, run for real: a sink killed with SIGKILL is restarted by
supervisord, and the collector's publishing goes on without a hole meanwhile."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import zmq
from support.processes import program
from support.waiting import wait_for

from statspout import bus, wire

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def supervisord(tmp_path: Path, env: dict[str, str], edit=lambda conf: conf):
    """supervisord running a copy of our supervisord.conf (changed by ``edit``) in tmp_path;
    yields a function that runs supervisorctl there."""
    (tmp_path / "supervisord.conf").write_text(edit((REPO / "supervisord.conf").read_text()))
    (tmp_path / ".venv").symlink_to(Path(program("statspout-sink")).parent.parent)
    (tmp_path / "run").mkdir()
    (tmp_path / "conf.d").mkdir()

    def ctl(*args: str) -> str:
        # Run from the folder of the configuration: supervisorctl finds it there by itself.
        return subprocess.run([program("supervisorctl"), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True).stdout

    subprocess.run([program("supervisord"), "-c", str(tmp_path / "supervisord.conf")],
                   env=env, check=True)
    try:
        yield ctl
    finally:
        ctl("shutdown")
        pid_file = tmp_path / "run" / "supervisord.pid"
        wait_for(lambda: not pid_file.exists(), 20, "supervisord to shut down")


def pipeline_env(tmp_path: Path, endpoints: tuple[str, str], run_id: str) -> dict[str, str]:
    listen, publish = endpoints
    return {
        **os.environ,
        "STATSPOUT_ROUTER_LISTEN": listen, "STATSPOUT_ROUTER_PUBLISH": publish,
        "STATSPOUT_ROUTER_INCLUDE": f"label=statspout.test={run_id}",
        "STATSPOUT_ROUTER_CONTROL": f"ipc://{tmp_path}/router.ctl",
        "STATSPOUT_COLLECTOR_CONNECT": listen, "STATSPOUT_COLLECTOR_INTERVAL": "1",
        "STATSPOUT_SINK_CONNECT": publish,
    }


@pytest.fixture
def supervised(tmp_path, endpoints, run_id):
    """supervisord running a copy of our supervisord.conf in tmp_path, on fresh endpoints."""
    with supervisord(tmp_path, pipeline_env(tmp_path, endpoints, run_id)) as ctl:
        yield ctl, endpoints[1]


def running_pid(status: str, program_name: str) -> int | None:
    for line in status.splitlines():
        fields = line.split()
        if fields and fields[0] == program_name and fields[1] == "RUNNING":
            return int(fields[3].rstrip(","))
    return None


def test_killed_sink_is_restarted_and_collection_goes_on(supervised, make_container, run_id):
    ctl, publish = supervised
    make_container("sleep 3600", name=f"watched-{run_id}")
    status = wait_for(
        lambda: (s := ctl("status")) and all(running_pid(s, p) for p in
                                             ("router", "collector", "sink-stdout")) and s,
        30, "router, collector and sink RUNNING")
    sink_pid = running_pid(status, "sink-stdout")

    # A second subscriber watches the router's output numbering across the sink's death.
    context = zmq.Context()
    watcher = bus.sink_subscriber(context, publish)
    try:
        sequences: list[int] = []
        numbers_taken: list[int] = []  # a batch (wire 1.2) takes one number per item

        def receive(count: int) -> bool:
            while watcher.poll(100):
                _topic, number, payload = watcher.recv_multipart()
                sequences.append(bus.unpack_sequence(number))
                numbers_taken.append(len(wire.decode_all(payload)))
            return len(sequences) >= count

        wait_for(lambda: receive(2), 20, "messages on the router's output")
        os.kill(sink_pid, signal.SIGKILL)
        at_kill = len(sequences)
        restarted = wait_for(
            lambda: (pid := running_pid(ctl("status"), "sink-stdout")) and pid != sink_pid and pid,
            30, "supervisord to restart the sink")
        assert restarted != sink_pid
        wait_for(lambda: receive(at_kill + 3), 20, "three more messages after the kill")
    finally:
        watcher.close()
        context.term()
    expected = [sequences[0] + sum(numbers_taken[:i]) for i in range(len(sequences))]
    assert sequences == expected, "the router's output had a hole while the sink was down"


def test_operations_log_command_works_for_router_and_collector(supervised):
    # docs/operations.md: `supervisorctl tail -f collector stderr`.
    ctl, _ = supervised
    wait_for(lambda: "collecting every" in ctl("tail", "collector", "stderr"), 30,
             "the collector's log through supervisorctl")
    wait_for(lambda: "routing from" in ctl("tail", "router", "stderr"), 30,
             "the router's log through supervisorctl")


def test_one_line_turns_curve_on_for_every_program(tmp_path, endpoints, run_id, make_container):
    # docs/security.md, one host: keys made into keys/, then the commented line uncommented.
    keys = tmp_path / "keys"
    subprocess.run([program("statspout-keygen"), "--dir", str(keys), "router", "collector",
                    "sink"], check=True, capture_output=True)
    (keys / "authorized").mkdir()
    for name in ("collector", "sink"):
        (keys / "authorized" / f"{name}.key").write_bytes((keys / f"{name}.key").read_bytes())

    def uncomment(conf: str) -> str:
        conf = re.sub(r"^(environment = STATSPOUT_SINK_STATE_DIR=)", r"; \1", conf,
                      flags=re.MULTILINE)
        return re.sub(r"^; (environment = STATSPOUT_KEYS_DIR=)", r"\1", conf, flags=re.MULTILINE)

    container = make_container("sleep 3600", name=f"curve-{run_id}")
    with supervisord(tmp_path, pipeline_env(tmp_path, endpoints, run_id), uncomment) as ctl:
        wait_for(lambda: "CURVE on" in ctl("tail", "router", "stderr"), 30, "CURVE on")
        out = tmp_path / "run" / "sink-stdout.out"
        wait_for(lambda: out.exists() and container.name in out.read_text(), 30,
                 "samples through CURVE at the stdout sink")
        assert "refused" not in ctl("tail", "router", "stderr")
