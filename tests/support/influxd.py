"""A real InfluxDB 1.x server (Debian's ``influxd``) on 127.0.0.1, in a temporary directory.

``running_influxd()`` starts it and stops it; in between the test can ``stop()`` and
``start()`` it again on the same port and data (an outage), and query it with InfluxQL.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from support.ports import free_port
from support.server_process import ServerProcess, running

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



class InfluxServer(ServerProcess):
    name = "influxd"

    def __init__(self, root: Path) -> None:
        super().__init__(root / "influxd.log")
        self.root = root
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.config = root / "influxdb.conf"
        self.config.write_text(
            _CONFIG.format(root=root, rpc_port=free_port(), http_port=self.http_port)
        )

    def command(self) -> list[str]:
        return [INFLUXD, "run", "-config", str(self.config)]

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


def running_influxd() -> AbstractContextManager[InfluxServer]:
    return running(InfluxServer, "influxd-")
