"""Container discovery: the list of running containers, kept current by the Docker events stream.

The events stream is opened *before* each listing, so a container that starts in between is
seen by one or the other. When the daemon goes away the watcher reconnects with backoff,
resumes the stream from the last event's time (``since=``) and asks for a new listing.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import requests.exceptions

from statspout.backoff import Backoff

if TYPE_CHECKING:
    from docker.types.daemon import CancellableStream

log = logging.getLogger("statspout.collector")

# The Docker actions we follow. "die" is sent for every exit (docker stop, a crash, the main
# process ending), so it, not "stop", is what makes a container leave the running set. "create",
# "oom", "health_status" (sent as "health_status: healthy" …) and "restart" change only the
# state.
WATCHED_ACTIONS = ("create", "start", "die", "rename", "destroy", "pause", "unpause", "oom",
                   "health_status", "restart")
# Statuses of a listing's "State" that are sampled: the daemon answers stats for them.
SAMPLED_STATUSES = ("running", "paused")

# Waits between attempts to reopen the events stream (statspout/backoff.py).
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 30.0


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    image: str
    labels: dict[str, str] = field(default_factory=dict)
    # The container's main process on the host, for sources that read /proc (0 when unknown).
    pid: int = 0


@dataclass(frozen=True)
class DockerEvent:
    """One container event from the daemon, reduced to what discovery needs."""

    action: str
    id: str
    name: str
    image: str
    timestamp: int  # ns since the epoch, UTC, as the wire's ``timestamp``
    old_name: str | None = None


class Resync:
    """Put on the event queue each time the stream is (re)opened: list the containers now."""


def container_info(attrs: dict) -> ContainerInfo:
    """From ``GET /containers/{id}/json`` (inspect)."""
    config = attrs.get("Config") or {}
    return ContainerInfo(
        id=attrs["Id"],
        name=attrs.get("Name", "").lstrip("/"),
        image=config.get("Image") or attrs.get("Image", ""),
        labels=dict(config.get("Labels") or {}),
        pid=int((attrs.get("State") or {}).get("Pid") or 0),
    )


def list_containers(client: docker.DockerClient) -> dict[str, tuple[ContainerInfo, str]]:
    """Every container, running or not, by id, with its status ("running", "exited", …), from
    ``GET /containers/json?all=1``."""
    listed = {}
    for entry in client.api.containers(all=True):
        names = entry.get("Names") or ["/"]
        info = ContainerInfo(
            id=entry["Id"],
            name=names[0].lstrip("/"),
            image=entry.get("Image", ""),
            labels=dict(entry.get("Labels") or {}),
        )
        listed[entry["Id"]] = (info, str(entry.get("State") or "").lower())
    return listed


def inspect(client: docker.DockerClient, container_id: str) -> dict[str, Any] | None:
    """``GET /containers/{id}/json``; None when the container is gone."""
    try:
        return client.api.inspect_container(container_id)
    except docker.errors.NotFound:
        return None


def is_running(attrs: dict[str, Any]) -> bool:
    return bool((attrs.get("State") or {}).get("Running"))


def parse_event(raw: dict) -> DockerEvent | None:
    # "health_status: healthy" → "health_status"
    action = str(raw.get("Action") or "").partition(":")[0]
    if raw.get("Type") != "container" or action not in WATCHED_ACTIONS:
        return None
    actor = raw.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    old_name = attributes.get("oldName")
    return DockerEvent(
        action=action,
        id=actor.get("ID") or raw.get("id", ""),
        name=attributes.get("name", ""),
        image=attributes.get("image", ""),
        timestamp=int(raw.get("timeNano") or int(raw.get("time", 0)) * 1_000_000_000),
        old_name=old_name.lstrip("/") if old_name else None,
    )


class EventWatcher(threading.Thread):
    """Follows the events stream in its own thread and hands DockerEvents and Resyncs to
    ``events``. Only reads (GET /events)."""

    def __init__(
        self,
        client_factory: Callable[[], docker.DockerClient],
        events: queue.Queue,
        stop: threading.Event,
    ) -> None:
        super().__init__(name="docker-events", daemon=True)
        self._client_factory = client_factory
        self._events = events
        self._stop_requested = stop
        self._since_ns: int | None = None
        self._stream: CancellableStream[dict[str, Any]] | None = None
        # Reset each time the stream opens: an outage after hours of streaming starts short.
        self._backoff = Backoff(RECONNECT_FIRST_S, RECONNECT_MAX_S)

    def run(self) -> None:
        while not self._stop_requested.is_set():
            try:
                self._follow()
            except (docker.errors.DockerException, requests.exceptions.RequestException,
                    OSError) as exc:
                if self._stop_requested.is_set():
                    return
                delay = self._backoff.next_delay()
                log.warning("Docker events stream lost (%s); reconnecting in %.1f s", exc, delay)
                self._stop_requested.wait(delay)

    def _follow(self) -> None:
        client = self._client_factory()
        try:
            since = None
            if self._since_ns is not None:
                seconds, nanos = divmod(self._since_ns, 1_000_000_000)
                since = f"{seconds}.{nanos:09d}"
            # The request is sent here: from now on no event is missed, so list afterwards.
            # ``since`` as "seconds.nanoseconds", which the daemon takes (the stubs know only
            # whole seconds): resuming to the nanosecond replays no event twice.
            stream = client.api.events(  # type: ignore[call-overload]
                since=since,
                decode=True,
                filters={"type": "container", "event": list(WATCHED_ACTIONS)},
            )
            self._stream = stream
            if since is not None:
                log.info("Docker events stream resumed")
            self._backoff.reset()
            self._events.put(Resync())
            for raw in stream:
                event = parse_event(raw)
                if event is None:
                    continue
                self._since_ns = event.timestamp
                self._events.put(event)
            if not self._stop_requested.is_set():
                raise ConnectionError("the daemon closed the events stream")
        finally:
            self._stream = None
            client.close()

    def close(self) -> None:
        """Stop following: ends the blocking read of the stream."""
        self._stop_requested.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # closing a half-dead socket may raise anything; we are leaving
                pass
