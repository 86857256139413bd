"""A container's lifecycle state from one inspect, and the engine's counts from one /info: the
``kind: "state"`` and ``kind: "engine"`` messages.

Both are read only when something changed (a Docker event, a resync) or once per interval
(/info): never once per sample. An unchanged container's state message of every interval is
its previous encoding with a new seq and timestamp (``EncodedState``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from statspout import wire
from statspout.collector.discovery import ContainerInfo
from statspout.collector.figures import parse_docker_time

# Statuses in which the container has no exit code to tell (it runs, or is frozen running).
_LIVE = ("running", "paused")
# Docker writes this for a time that never happened (never started, never exited).
_NEVER = "0001-01-01"


@dataclass(frozen=True, slots=True)
class ContainerStateFigures:
    """The state fields of a ContainerState, beside its identity."""

    status: str
    health: str | None
    health_failing_streak: int | None
    restart_count: int
    exit_code: int | None
    oom_killed: bool
    started_at: int | None
    finished_at: int | None
    pid: int

    @property
    def exists_running(self) -> bool:
        """Running in the wide sense: sampled, and published every interval under
        ``--states running``."""
        return self.status in ("running", "paused", "restarting")


def state_from_inspect(attrs: dict[str, Any]) -> ContainerStateFigures:
    """From ``GET /containers/{id}/json`` (Docker's, or Podman's compatible one)."""
    state = attrs.get("State") or {}
    status = str(state.get("Status") or "").lower()
    if status not in wire.CONTAINER_STATUSES:
        status = _status_from_flags(state)
    health = state.get("Health") or {}
    health_status = str(health.get("Status") or "").lower() or None
    if health_status not in wire.HEALTH_STATUSES:
        health_status = None  # "none", or no health check at all
    started_at = _time_or_none(state.get("StartedAt"))
    return ContainerStateFigures(
        status=status,
        health=health_status,
        health_failing_streak=(int(health.get("FailingStreak") or 0)
                               if health_status is not None else None),
        restart_count=int(attrs.get("RestartCount") or 0),
        exit_code=(None if status in _LIVE or started_at is None
                   else int(state.get("ExitCode") or 0)),
        oom_killed=bool(state.get("OOMKilled")),
        started_at=started_at,
        finished_at=_time_or_none(state.get("FinishedAt")),
        pid=int(state.get("Pid") or 0),
    )


def _status_from_flags(state: dict[str, Any]) -> str:
    """A status named otherwise (Podman's own "configured", "stopped"), from the flags."""
    if state.get("Dead"):
        return "dead"
    if state.get("Paused"):
        return "paused"
    if state.get("Restarting"):
        return "restarting"
    if state.get("Running"):
        return "running"
    return "exited" if _time_or_none(state.get("StartedAt")) else "created"


def _time_or_none(text: Any) -> int | None:
    if not text or not isinstance(text, str) or text.startswith(_NEVER):
        return None
    try:
        return parse_docker_time(text)
    except ValueError:
        return None


def state_message(
    seq: int, host: str, info: ContainerInfo, figures: ContainerStateFigures, *,
    timestamp: int, interval_s: float,
) -> wire.ContainerState:
    return wire.ContainerState(
        seq=seq, host=host, id=info.id, name=info.name, image=info.image, labels=info.labels,
        timestamp=timestamp, interval_s=interval_s, status=figures.status,
        health=figures.health, health_failing_streak=figures.health_failing_streak,
        restart_count=figures.restart_count, exit_code=figures.exit_code,
        oom_killed=figures.oom_killed, started_at=figures.started_at,
        finished_at=figures.finished_at, pid=figures.pid,
    )


# The fields of a state message that change from one interval to the next of the same state.
_PER_MESSAGE = ("seq", "timestamp")


class EncodedState:
    """One container's state message encoded once, but for its seq and timestamp: the
    periodic message of an unchanged state is these bytes around the two numbers packed
    anew, the very bytes ``wire.encode`` gives (msgpack writes a map's header, then each key
    and value in turn, each packed as on its own)."""

    __slots__ = ("_parts", "figures", "info")

    def __init__(self, host: str, info: ContainerInfo, figures: ContainerStateFigures, *,
                 interval_s: float) -> None:
        self.info, self.figures = info, figures
        fields = state_message(0, host, info, figures, timestamp=0,
                               interval_s=interval_s).to_dict()
        packer = msgpack.Packer(use_bin_type=True)  # as wire.encode packs
        part = [packer.pack_map_header(len(fields))]
        parts, order = [], []
        for key, value in fields.items():
            part.append(packer.pack(key))
            if key in _PER_MESSAGE:
                parts.append(b"".join(part))
                order.append(key)
                part = []
            else:
                part.append(packer.pack(value))
        parts.append(b"".join(part))
        if tuple(order) != _PER_MESSAGE:
            raise ValueError(f"state message fields in the order {order}, not {_PER_MESSAGE}")
        # before seq, between seq and timestamp, after timestamp
        self._parts: tuple[bytes, bytes, bytes] = (parts[0], parts[1], parts[2])

    def describes(self, info: ContainerInfo, figures: ContainerStateFigures) -> bool:
        """Made from these very objects (a change of state makes new ones)."""
        return info is self.info and figures is self.figures

    def payload(self, seq: int, timestamp: int) -> bytes:
        """The message's payload with this seq and timestamp."""
        head, middle, tail = self._parts
        return b"".join((head, msgpack.packb(seq), middle, msgpack.packb(timestamp), tail))


@dataclass(frozen=True, slots=True)
class EngineFigures:
    """What one /info call says, with the engine's name (from /version, once per connection)."""

    engine: str
    server_version: str
    containers_running: int
    containers_paused: int
    containers_stopped: int
    images: int
    cpus: int
    memory_total: int


def engine_name(version: dict[str, Any]) -> str:
    """``GET /version`` → "podman" when a component says Podman, else "docker"."""
    components = version.get("Components") or ()
    names = " ".join(str(c.get("Name", "")) for c in components if isinstance(c, dict))
    return "podman" if "podman" in names.lower() else "docker"


def engine_from_info(engine: str, info: dict[str, Any]) -> EngineFigures:
    """From ``GET /info`` (Docker's, or Podman's compatible one)."""
    return EngineFigures(
        engine=engine,
        server_version=str(info.get("ServerVersion") or ""),
        containers_running=int(info.get("ContainersRunning") or 0),
        containers_paused=int(info.get("ContainersPaused") or 0),
        containers_stopped=int(info.get("ContainersStopped") or 0),
        images=int(info.get("Images") or 0),
        cpus=int(info.get("NCPU") or 0),
        memory_total=int(info.get("MemTotal") or 0),
    )


def engine_message(
    seq: int, host: str, figures: EngineFigures, *, timestamp: int, interval_s: float
) -> wire.EngineInfo:
    return wire.EngineInfo(
        seq=seq, host=host, timestamp=timestamp, interval_s=interval_s, engine=figures.engine,
        server_version=figures.server_version, containers_running=figures.containers_running,
        containers_paused=figures.containers_paused,
        containers_stopped=figures.containers_stopped, images=figures.images,
        cpus=figures.cpus, memory_total=figures.memory_total,
    )
