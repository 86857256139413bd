"""A real MongoDB wire-protocol server (SecantusDB, ``secantusd-py``) on 127.0.0.1.

``running_mongo()`` starts it with its storage in a temporary directory and stops it; in
between the test can ``stop()`` and ``start()`` it on the same port and storage (an outage).
pymongo talks to it unchanged.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymongo

from support.ports import free_port


class MongoServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        # directConnection: one server, whatever topology it advertises.
        self.uri = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"
        self.log_path = root / "secantusd.log"
        self._process: subprocess.Popen | None = None

    def start(self, deadline_s: float = 60.0) -> None:
        command = [
            sys.executable, "-m", "secantus",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--storage-path", str(self.root / "data"),
            "--standalone", "--log-level", "WARNING",
        ]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.root,  # it looks for ./secantusd.toml; keep it away from the repo's
            )
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"secantusd exited: {self.log_path.read_text()[-2000:]}")
            if self.ping():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"secantusd did not answer ping within {deadline_s} s")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
        self._process = None

    def ping(self) -> bool:
        try:
            with self.client(timeout_ms=500) as client:
                client.admin.command("ping")
            return True
        except pymongo.errors.PyMongoError:
            return False

    def client(self, timeout_ms: int = 5000) -> pymongo.MongoClient:
        return pymongo.MongoClient(
            self.uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
            tz_aware=True,
        )


@contextmanager
def running_mongo() -> Iterator[MongoServer]:
    with tempfile.TemporaryDirectory(prefix="secantusd-") as root:
        server = MongoServer(Path(root))
        server.start()
        try:
            yield server
        finally:
            server.stop()
