"""The sink interface: what a repository implements to receive container statistics.

A sink holds only what is specific to its backend. The shared runtime (``runtime.py``) owns the
socket, decoding, the loop, counting, logging and shutdown; it calls the methods below from
one thread. A sink that does I/O in threads of its own must make ``write`` cheap and safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

from statspout.wire import ContainerEvent, ContainerState, ContainerStats, EngineInfo


@dataclass(frozen=True)
class Option:
    """One option of a sink, given as ``--<sink>.<name>`` or ``STATSPOUT_<SINK>_<NAME>``.

    In the sink it is read as ``settings.<name>`` with dashes turned into underscores.
    """

    name: str
    help: str
    default: Any = None
    type: Callable[[str], Any] = str
    choices: Sequence[str] | None = None
    repeatable: bool = False
    secret: bool = False  # shown as *** where the worker logs its options

    @property
    def attribute(self) -> str:
        return self.name.replace("-", "_").replace(".", "_")


class Sink:
    """Base class of every sink. Subclasses set ``name`` and ``options`` and override ``write``.

    Lifecycle: ``__init__(settings)`` → ``open()`` → ``write``/``handle_event``/``flush`` many
    times → ``close()``. An exception from ``write`` or ``handle_event`` is counted and logged by
    the runtime, and the worker goes on; one from ``open`` ends the worker with an error.
    """

    name: ClassVar[str] = ""
    options: ClassVar[Sequence[Option]] = ()

    def __init__(self, settings: SimpleNamespace) -> None:
        self.settings = settings

    def open(self) -> None:
        """Connect, start servers. Called once before the first message."""

    def write(self, sample: ContainerStats) -> None:
        """Take one sample."""
        raise NotImplementedError

    def handle_event(self, event: ContainerEvent) -> None:
        """A container started, stopped, was renamed or destroyed; forget what it has to."""

    def handle_state(self, state: ContainerState) -> None:
        """A container's lifecycle state (on a change, and every interval). A sink that does
        not override this has these messages counted as ``skipped_kinds`` and skipped."""

    def handle_engine(self, engine: EngineInfo) -> None:
        """A host's engine counts, every interval; not overridden: counted and skipped."""

    def flush(self) -> None:
        """Called about once a second and at shutdown: push out anything buffered."""

    def close(self) -> None:
        """Release everything. Called once, after the last flush."""

    def counters(self) -> Mapping[str, int]:
        """Sink-specific counters for the periodic report (written, dropped, retries, …)."""
        return {}
