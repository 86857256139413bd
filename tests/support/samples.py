"""Wire messages for tests that do not need a container behind them."""

from __future__ import annotations

from statspout import wire


def make_stats(seq: int = 1, **overrides) -> wire.ContainerStats:
    fields = dict(
        seq=seq, host="test-host", id="c0ffee" * 10 + "abcd", name="web", image="nginx:1",
        labels={"com.docker.compose.project": "shop"}, timestamp=1_795_880_402_500_000_001,
        cpu_percent=12.5, cpu_usage_ns=8_000_000_000, online_cpus=4, mem_usage=52_428_800,
        mem_limit=1_691_289_600, mem_percent=3.1, rx_bytes=3400, tx_bytes=1200, rx_packets=34,
        tx_packets=12, rx_errors=0, tx_errors=0, rx_dropped=0, tx_dropped=0,
        blk_read_bytes=2**33, blk_write_bytes=4096, pids=3,
    )
    fields.update(overrides)
    return wire.ContainerStats(**fields)


def make_event(action: str = "stop", seq: int = 1, **overrides) -> wire.ContainerEvent:
    fields = dict(
        seq=seq, host="test-host", id="c0ffee" * 10 + "abcd", name="web", image="nginx:1",
        labels={}, timestamp=1_795_880_402_500_000_001, action=action,
    )
    fields.update(overrides)
    return wire.ContainerEvent(**fields)
