"""A real MongoDB wire-protocol server (SecantusDB, ``secantusd-py``) on 127.0.0.1.

``running_mongo()`` starts it with its storage in a temporary directory and stops it; in
between the test can ``stop()`` and ``start()`` it on the same port and storage (an outage).
pymongo talks to it unchanged.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from pathlib import Path

import pymongo

from support.ports import free_port
from support.server_process import ServerProcess, running


class MongoServer(ServerProcess):
    name = "secantusd"
    poll_s = 0.2
    start_deadline_s = 60.0
    stop_grace_s = 20.0

    def __init__(self, root: Path) -> None:
        # It looks for ./secantusd.toml: run it in its own folder, away from the repository's.
        super().__init__(root / "secantusd.log", cwd=root)
        self.root = root
        self.port = free_port()
        # directConnection: one server, whatever topology it advertises.
        self.uri = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "secantus",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--storage-path", str(self.root / "data"),
            "--standalone", "--log-level", "WARNING",
        ]

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


def running_mongo() -> AbstractContextManager[MongoServer]:
    return running(MongoServer, "secantusd-")
