"""Running the real statspout programs as processes, and reading what they print."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import zmq

BIN = Path(sys.executable).parent


def program(name: str) -> str:
    """Path of an installed console script of ours (statspout-collector, …)."""
    return str(BIN / name)



def terminate(popen: subprocess.Popen, timeout: float = 10) -> int:
    """SIGTERM, as supervisord stops a program; SIGKILL if it is still running at the
    deadline. Its exit status."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    return popen.returncode

@contextmanager
def collector_into_socket(args: Sequence[str], log_path: Path,
                          env: dict[str, str] | None = None
                          ) -> Iterator[tuple[zmq.Socket, subprocess.Popen]]:
    """A real collector process (``python -m statspout.collector.main ARGS``, its output in
    ``log_path``) connected to a SUB socket bound here, where a router's input would be: the
    socket and the process. At the end the collector is stopped (SIGTERM) and the socket
    closed."""
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    port = sub.bind_to_random_port("tcp://127.0.0.1")
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "statspout.collector.main", *args,
             "--connect", f"tcp://127.0.0.1:{port}"],
            stdout=log_file, stderr=subprocess.STDOUT, env=env,
        )
    try:
        yield sub, process
    finally:
        terminate(process, 15)
        sub.close()
        context.term()


class Process:
    """A child process whose stdout and stderr lines are collected by threads."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.popen = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in list(self.stdout) if line.startswith("{")]

    def stop(self, timeout: float = 10) -> int:
        terminate(self.popen, timeout)
        for reader in self._readers:
            reader.join(5)
        return self.popen.returncode

    def log(self) -> str:
        return "\n".join(self.stderr)


class Pipeline:
    """Router, collector and a JSON stdout sink on fresh loopback endpoints.

    The router only lets through containers of ``run_id`` (the test label), so containers of
    other tests on the same engine never show up.
    """

    def __init__(self, endpoints: tuple[str, str], run_id: str, interval: float = 1.0,
                 host: str = "e2e-host", router_args: Sequence[str] = (),
                 collector_args: Sequence[str] = (),
                 collector_env: dict[str, str] | None = None) -> None:
        listen, publish = endpoints
        self.interval = interval
        # A control socket of its own: a router refuses one another router answers on.
        self._control_folder = tempfile.TemporaryDirectory(prefix="statspout-ctl-")
        self.control = f"ipc://{self._control_folder.name}/router.ctl"
        self.router = Process([
            program("statspout-router"), "--listen", listen, "--publish", publish,
            "--control", self.control, "--include", f"label=statspout.test={run_id}",
            *router_args,
        ])
        self.sink = Process([
            program("statspout-sink"), "stdout", "--stdout.format", "json", "--connect", publish,
        ])
        self.collector = Process([
            program("statspout-collector"), "--connect", listen, "--interval", str(interval),
            "--host", host, *collector_args,
        ], env=collector_env)

    def samples(self, name: str | None = None) -> list[dict]:
        return [m for m in self.sink.json_lines()
                if m["kind"] == "stats" and (name is None or m["name"] == name)]

    def events(self, name: str | None = None) -> list[dict]:
        return [m for m in self.sink.json_lines()
                if m["kind"] == "event" and (name is None or m["name"] == name)]

    def stop(self) -> None:
        for process in (self.collector, self.sink, self.router):
            process.stop()
        self._control_folder.cleanup()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
