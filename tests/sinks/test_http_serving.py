"""The HTTP sinks' shared server (sinks/http_serving.py): a sink that cannot bind its address
exits non-zero with one line naming the address, whichever sink it is."""

from __future__ import annotations

import socket

import pytest
from support.processes import Process, program


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
