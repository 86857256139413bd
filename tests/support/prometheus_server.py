"""A real Prometheus server (Debian's ``prometheus`` binary) scraping given targets, for tests.

    with prometheus_server(["127.0.0.1:9338"]) as prom:
        prom.wait_for('container_last_seen{id="abc"}', lambda result: result)

It listens on 127.0.0.1 on a free port, keeps its data in a temporary directory, scrapes every
target once a second, and is stopped (then killed if it lingers) when the block ends.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from support.ports import free_port

PROMETHEUS_BINARY = "/usr/bin/prometheus"
SCRAPE_INTERVAL_S = 1



class PrometheusServer:
    def __init__(self, url: str, log_path: Path) -> None:
        self.url = url
        self.log_path = log_path

    def api(self, path: str, **params: str) -> Any:
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` now: [{"metric": {labels}, "value": [t, "v"]}, …]."""
        return self.api("query", query=expr)["result"]

    def wait_for(
        self,
        expr: str,
        condition: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 20.0,
    ) -> list[dict[str, Any]]:
        """Query until ``condition(result)`` holds; the last result, or AssertionError."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if condition(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr!r}: condition not met in {timeout} s; last {result}")
            time.sleep(0.2)

    def wait_for_targets_up(self, count: int, timeout: float = 30.0) -> None:
        self.wait_for("up == 1", lambda result: len(result) >= count, timeout)


@contextmanager
def prometheus_server(targets: Sequence[str]) -> Iterator[PrometheusServer]:
    """Start Prometheus scraping ``targets`` (HOST:PORT of /metrics endpoints)."""
    binary = shutil.which("prometheus") or PROMETHEUS_BINARY
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="statspout-prometheus-") as tmp:
        directory = Path(tmp)
        config = {  # JSON is YAML, so no YAML writer is needed
            "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s",
                       "scrape_timeout": f"{SCRAPE_INTERVAL_S}s"},
            "scrape_configs": [{"job_name": "statspout",
                                "static_configs": [{"targets": list(targets)}]}],
        }
        (directory / "prometheus.yml").write_text(json.dumps(config))
        log_path = directory / "prometheus.log"
        url = f"http://127.0.0.1:{port}"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [binary, f"--config.file={directory / 'prometheus.yml'}",
                 f"--storage.tsdb.path={directory / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )
            try:
                _wait_ready(url, process, log_path)
                yield PrometheusServer(url, log_path)
            finally:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_ready(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 30.0
                ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}: "
                               f"{log_path.read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"prometheus not ready in {timeout} s: {log_path.read_text()[-2000:]}")
