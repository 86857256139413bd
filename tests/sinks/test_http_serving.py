"""The HTTP sinks' shared server (sinks/http_serving.py): a sink that cannot bind its address
exits non-zero with one line naming the address, whichever sink it is; /metrics gets the same
limits as the REST API."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import requests
from support.processes import Process, program

from statspout.sinks.http_serving import ServerLimits
from statspout.sinks.prometheus import PrometheusSink


@pytest.mark.parametrize("sink", ["rest", "prometheus"])
def test_a_taken_port_exits_non_zero_with_one_line_naming_the_address(sink: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        process = Process([program("statspout-sink"), sink, f"--{sink}.address", address])
        try:
            assert process.popen.wait(20) != 0
        finally:
            process.stop()
    errors = [line for line in process.stderr if "ERROR" in line]
    assert len(errors) == 1, process.log()
    assert address in errors[0] and "in use" in errors[0], errors[0]


@pytest.fixture()
def metrics_sink() -> Iterator[PrometheusSink]:
    sink = PrometheusSink(SimpleNamespace(address=("127.0.0.1", 0), interval=5.0,
                                          stale_intervals=3, label_names=None))
    sink.open()
    try:
        yield sink
    finally:
        sink.close()


def test_metrics_has_the_rest_sinks_limits(metrics_sink: PrometheusSink) -> None:
    """/metrics is served by the same server: a request line over the limit is refused and
    counted, other paths are 404, and /metrics still answers."""
    url = f"http://127.0.0.1:{metrics_sink.port}"
    too_long = requests.get(url + "/metrics?" + "x" * (ServerLimits.max_request_line + 10),
                            timeout=5)
    assert too_long.status_code in (400, 414, 431)
    assert requests.get(url + "/elsewhere", timeout=5).status_code == 404
    answer = requests.get(url + "/metrics", timeout=5)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain")
    assert "container_last_seen" in answer.text
    assert metrics_sink.counters()["bad_requests"] == 1
