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


# The figures of the sink tests: a distinct value in nearly every field, so that one written
# into the wrong metric, column or field shows.
_SINK_FIGURES = dict(
    image="nginx:1.27", cpu_percent=12.5, cpu_usage_ns=2_500_000_000, online_cpus=4,
    mem_usage=50 * 2**20, mem_limit=2**30, mem_percent=4.88, rx_bytes=1001, tx_bytes=1002,
    rx_packets=11, tx_packets=12, rx_errors=1, tx_errors=2, rx_dropped=3, tx_dropped=4,
    blk_read_bytes=4096, blk_write_bytes=8192, pids=7,
)


def make_container_stats(container_id: str, seq: int = 1, **overrides) -> wire.ContainerStats:
    """A sample of the container ``container_id``, named "name-<id>", for the sinks that keep
    the latest sample of each container."""
    fields = dict(
        seq=seq, host="node-1", id=container_id, name=f"name-{container_id}", labels={},
        timestamp=1_700_000_000_250_000_000, **_SINK_FIGURES,
    )
    fields.update(overrides)
    return wire.ContainerStats(**fields)


def make_series_stats(seq: int, **overrides) -> wire.ContainerStats:
    """The ``seq``-th sample of one container, for the sinks that store a time series: its
    timestamp (1 ms apart) and CPU time grow with ``seq``, so every sample is a point of its
    own, and its received bytes need all 64 bits."""
    fields = dict(
        _SINK_FIGURES, seq=seq, host="node 1", id="c0ffee" * 8, name="web", labels={},
        timestamp=1_700_000_000_000_000_123 + seq * 1_000_000,
        cpu_usage_ns=2_500_000_000 + seq, rx_bytes=2**62 + 12345,
    )
    fields.update(overrides)
    return wire.ContainerStats(**fields)


def make_event_for(sample: wire.ContainerStats, action: str, **overrides) -> wire.ContainerEvent:
    """The event ``action`` of the container ``sample`` came from, 1 ns after it."""
    fields = dict(
        seq=2, host=sample.host, id=sample.id, name=sample.name, image=sample.image,
        labels=sample.labels, timestamp=sample.timestamp + 1,
    )
    fields.update(overrides)
    return make_event(action, **fields)


def make_state(seq: int = 1, **overrides) -> wire.ContainerState:
    """A state message: an exited container without a health check, unless overridden."""
    fields = dict(
        seq=seq, host="test-host", id="c0ffee" * 10 + "abcd", name="web", image="nginx:1",
        labels={"com.docker.compose.project": "shop"}, timestamp=1_795_880_402_500_000_001,
        interval_s=1.0, status="exited", health=None, health_failing_streak=None,
        restart_count=2, exit_code=3, oom_killed=False, started_at=1_795_880_400_000_000_000,
        finished_at=1_795_880_402_000_000_000, pid=0,
    )
    fields.update(overrides)
    return wire.ContainerState(**fields)


def make_engine(seq: int = 1, **overrides) -> wire.EngineInfo:
    fields = dict(
        seq=seq, host="test-host", timestamp=1_795_880_402_500_000_001, interval_s=1.0,
        engine="docker", server_version="20.10.24", containers_running=3, containers_paused=1,
        containers_stopped=2, images=7, cpus=2, memory_total=2**34,
    )
    fields.update(overrides)
    return wire.EngineInfo(**fields)
