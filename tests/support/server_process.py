"""A server program a test runs for real: started, waited for until it answers, stopped.

Subclasses say how to start it (``command``) and how to ask it whether it is up (``ping``);
``stop()`` then ``start()`` again on the same port and data is an outage.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

Server = TypeVar("Server", bound="ServerProcess")


class ServerProcess:
    name = "server"
    poll_s = 0.1
    start_deadline_s = 30.0
    stop_grace_s = 15.0

    def __init__(self, log_path: Path, cwd: Path | None = None) -> None:
        self.log_path = log_path
        self._cwd = cwd
        self._process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ping(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self._cwd,
            )
        deadline = time.monotonic() + self.start_deadline_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            if self.ping():
                return
            time.sleep(self.poll_s)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {self.start_deadline_s} s")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(self.stop_grace_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
        self._process = None


@contextmanager
def running(make: Callable[[Path], Server], prefix: str) -> Iterator[Server]:
    """A server made in a fresh temporary folder, started, and stopped and removed after."""
    with tempfile.TemporaryDirectory(prefix=prefix) as root:
        server = make(Path(root))
        server.start()
        try:
            yield server
        finally:
            server.stop()
