"""Readings through the Docker Engine API: ``GET /containers/{id}/stats``, streamed or polled.

``--api-mode stream`` follows one stats stream per container (collector/api_streams.py): the
daemon pushes a reading every second, and a read takes the newest one not taken before, waiting
at most two push periods for it (reads wait on the same pushes, so a cycle ends with the
daemon's round, however many containers wait in the pool). ``poll`` asks once per read with
``one-shot`` (API ≥ 1.41: a single sample, no previous one; before 1.41 the daemon takes two
samples a second apart); the calls run concurrently, one connection each. ``auto`` streams on
Docker when the interval is below ``STREAM_BELOW_S`` and polls otherwise (Podman's compatible
API pushes only every 5 s, and at long intervals a stream costs the daemon a sample every
second for one used).

Either way CPU percent is computed from our own previous reading, over the readings' ``read``
times (collector/figures.py). A streamed container whose stream has no fresh payload (it is
reconnecting after a daemon restart) is read once with one-shot instead (``stream_fallbacks``);
containers beyond ``--api-streams-max`` are polled (``polled_over_limit``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass

import docker
import docker.errors
from docker.utils import version_gte

from statspout.collector.api_streams import ApiStreams, StreamCounts
from statspout.collector.discovery import ContainerInfo
from statspout.collector.figures import Reading, reading_from_api
from statspout.collector.states import engine_name

log = logging.getLogger("statspout.collector")

ONE_SHOT_API = "1.41"
API_MODES = ("auto", "stream", "poll")
DEFAULT_STREAMS_MAX = 1000
# auto streams at intervals below this (Docker only). Measured with 50 containers on Docker
# 20.10 (docs/performance.md, collector API path): dockerd spends about as much per second on
# streams as on one-shot polling at 1 s, and polling at 10 s costs a tenth of it.
STREAM_BELOW_S = 2.0
# Seconds between two pushes of one container's stream: Docker samples its streams every second
# (plus the time sampling them all takes); Podman 4.3's compatible API every 5 s.
PUSH_PERIOD_S = {"docker": 1.0, "podman": 5.0}
# A read waits for a stream's next push up to this many push periods (Docker's period grows
# with the number of streamed containers), and takes a payload up to one interval (or push
# period) plus PUSH_SLACK_S old.
PUSH_WAIT_PERIODS = 2
PUSH_SLACK_S = 0.5


@dataclass
class ApiCounts:
    one_shot_reads: int = 0
    # A streamed container read with one-shot: its stream had no payload newer than the last
    # one taken within a push period (reconnecting, or just started on a slow daemon).
    stream_fallbacks: int = 0
    # A container read with one-shot because --api-streams-max streams are followed already.
    polled_over_limit: int = 0


class ApiSource:
    name = "api"
    concurrent = True  # a read may wait on the daemon (poll), or for a stream's next push

    def __init__(
        self, client: docker.DockerClient, *, mode: str = "poll", interval_s: float = 1.0,
        streams_max: int = DEFAULT_STREAMS_MAX, report_interval_s: float = 60.0,
    ) -> None:
        if mode not in API_MODES:
            raise ValueError(f"api mode {mode!r}: one of {', '.join(API_MODES)}")
        self._api = client.api
        self._one_shot = version_gte(self._api.api_version, ONE_SHOT_API) or None
        self._requested_mode = mode
        self._interval_s = interval_s
        self._streams_max = streams_max
        # "stream" or "poll", settled at the first read (auto asks the engine's name then, not
        # when the source is made: the cgroup source may never need it).
        self.mode: str | None = None
        self._mode_lock = threading.Lock()
        self._streams: ApiStreams | None = None
        self._wait_s = self._max_age_s = 0.0
        self.counts = ApiCounts()
        self._counts_lock = threading.Lock()
        self._report_interval_s = report_interval_s
        self._next_report = time.monotonic() + report_interval_s

    def describe(self) -> str:
        if self._requested_mode == "poll":
            return "one-shot polling (--api-mode poll)"
        streams = (f"a stats stream per container (at most {self._streams_max}, "
                   f"--api-streams-max; one-shot polling beyond)")
        if self._requested_mode == "stream":
            return f"{streams} (--api-mode stream)"
        return (f"{streams} on Docker at intervals below {STREAM_BELOW_S:g} s, else one-shot "
                f"polling (--api-mode auto)")

    def read(self, container: ContainerInfo) -> Reading | None:
        """One reading; None when the container vanished or stopped meanwhile."""
        if self.mode is None:
            self._settle_mode()
        self._maybe_report()
        if self._streams is None:
            return self._read_once(container, "one_shot_reads")
        stream = self._streams.follow(container.id)
        if stream is None:
            return self._read_once(container, "polled_over_limit")
        payload = stream.take_newer(self._wait_s, self._max_age_s)
        if payload is None:
            reading = self._read_once(container, "stream_fallbacks")
            if reading is not None:  # the stream may bring the same reading later
                stream.read_elsewhere(reading.timestamp)
            return reading
        return reading_from_api(payload)

    def forget(self, container_id: str) -> None:
        """The container's stream, if any, is closed."""
        if self._streams is not None:
            self._streams.forget(container_id)

    def close(self) -> None:
        if self._streams is not None:
            self._streams.close()

    def stream_counts(self) -> StreamCounts | None:
        """What the streams did so far; None when polling."""
        return None if self._streams is None else self._streams.counts

    def report(self) -> None:
        figures = {"mode": self.mode, **asdict(self.counts)}
        if self._streams is not None:
            figures |= {"streams": self._streams.followed(), **asdict(self._streams.counts)}
        log.info("api source: %s", " ".join(f"{k}={v}" for k, v in figures.items()))

    def _maybe_report(self) -> None:
        """The report line every report interval, written by whichever read comes first."""
        now = time.monotonic()
        with self._counts_lock:
            if now < self._next_report:
                return
            self._next_report = now + self._report_interval_s
        self.report()

    def _read_once(self, container: ContainerInfo, counted_as: str) -> Reading | None:
        with self._counts_lock:
            setattr(self.counts, counted_as, getattr(self.counts, counted_as) + 1)
        try:
            payload = self._api.stats(container.id, stream=False, one_shot=self._one_shot)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # "container is not running"
                return None
            raise
        except ValueError:
            # A container removed while the daemon reads it: the daemon ends the answer with
            # an empty body (200, no JSON). Vanished, if the daemon agrees it is gone.
            if not self._still_running(container.id):
                return None
            raise
        return reading_from_api(payload)

    def _still_running(self, container_id: str) -> bool:
        try:
            state = self._api.inspect_container(container_id).get("State") or {}
        except docker.errors.NotFound:
            return False
        return bool(state.get("Running"))

    def _settle_mode(self) -> None:
        with self._mode_lock:
            if self.mode is not None:
                return
            engine = self._engine() if self._requested_mode != "poll" else "docker"
            mode = choose_mode(self._requested_mode, engine, self._interval_s)
            push_period = PUSH_PERIOD_S[engine]
            self._wait_s = push_period * PUSH_WAIT_PERIODS
            self._max_age_s = max(self._interval_s, push_period) + PUSH_SLACK_S
            if mode == "stream":
                self._streams = ApiStreams(self._api, self._streams_max)
            self.mode = mode  # last: a read that sees it set finds the rest set too
        log.info("api source reads by %s on %s at a %g s interval (--api-mode %s)",
                 "streams" if mode == "stream" else "one-shot polling", engine,
                 self._interval_s, self._requested_mode)

    def _engine(self) -> str:
        try:
            return engine_name(self._api.version())
        except docker.errors.DockerException:
            return "docker"  # it answered the client's own version check a moment ago


def choose_mode(mode: str, engine: str, interval_s: float) -> str:
    """``stream`` or ``poll``: what ``--api-mode`` asks for; for ``auto``, streams on Docker
    at intervals below STREAM_BELOW_S."""
    if mode != "auto":
        return mode
    return "stream" if engine == "docker" and interval_s < STREAM_BELOW_S else "poll"
