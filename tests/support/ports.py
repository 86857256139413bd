"""Free TCP ports on the loopback address, for the servers and sockets a test starts."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Ports are drawn below the kernel's ephemeral range: a port in that range can be taken by any
# outgoing connection of this machine (a client's local port) between our check and the bind.
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 20_000
_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, never handed out before in this run, and so is
    the next one: a router's default replay endpoint is its publish port + 1, and sinks look
    for it there."""
    top = max(_LOWEST + 1_000, _ephemeral_start() - 2)
    for _ in range(10_000):
        port = random.randrange(_LOWEST, top)
        if {port, port + 1} & _handed_out:
            continue
        if _is_free(port) and _is_free(port + 1):
            _handed_out.update((port, port + 1))
            return port
    raise RuntimeError(f"no free pair of loopback ports in {_LOWEST}…{top}")
