"""A real InfluxDB 1.x server (Debian's ``influxd``) on 127.0.0.1, in a temporary directory.

``running_influxd()`` starts it and stops it; in between the test can ``stop()`` and
``start()`` it again on the same port and data (an outage), and query it with InfluxQL.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support.ports import free_port

INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"

_CONFIG = """\
reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  pprof-enabled = false

[continuous_queries]
  enabled = false
"""



class InfluxServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.config = root / "influxdb.conf"
        self.config.write_text(
            _CONFIG.format(root=root, rpc_port=free_port(), http_port=self.http_port)
        )
        self.log_path = root / "influxd.log"
        self._process: subprocess.Popen | None = None

    def start(self, deadline_s: float = 30.0) -> None:
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [INFLUXD, "run", "-config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"influxd exited: {self.log_path.read_text()[-2000:]}")
            if self.ping():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"influxd did not answer /ping within {deadline_s} s")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
        self._process = None

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response:
                return response.status == 204
        except (urllib.error.URLError, OSError):
            return False

    def query(self, influxql: str, database: str | None = None) -> list[dict[str, Any]]:
        """The series of the first statement's result, times in ns; raises on an error."""
        params = {"q": influxql, "epoch": "ns"}
        if database:
            params["db"] = database
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=10) as response:
            result = json.load(response)["results"][0]
        if "error" in result:
            raise RuntimeError(f"{influxql!r}: {result['error']}")
        return result.get("series", [])

    def rows(self, influxql: str, database: str) -> list[dict[str, Any]]:
        """Every row of every series as a dict of column → value, with the series' tags."""
        rows = []
        for series in self.query(influxql, database):
            tags = series.get("tags", {})
            for values in series["values"]:
                rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return rows

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')


@contextmanager
def running_influxd() -> Iterator[InfluxServer]:
    with tempfile.TemporaryDirectory(prefix="influxd-") as root:
        server = InfluxServer(Path(root))
        server.start()
        try:
            yield server
        finally:
            server.stop()
