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

from statspout.logs import mask_secrets
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
    # The message kinds the sink may hold unwritten (counted by ``unsettled``): a resume
    # checkpoint never moves past one of them before it is written.
    buffered_kinds: ClassVar[tuple[type, ...]] = (ContainerStats,)

    def __init__(self, settings: SimpleNamespace) -> None:
        self.settings = settings

    @classmethod
    def logged_options(cls, settings: SimpleNamespace) -> Sequence[Option]:
        """The options the start-up log shows: all, unless some do not apply to ``settings``."""
        return cls.options

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

    def unsettled(self) -> int:
        """How many of the latest samples given to ``write`` are not yet durably in the store
        after ``flush()`` returned (a sink with a write buffer of its own: those still in it).
        The runtime checkpoints the route's sequence past everything else, for replay after a
        restart. 0: everything is stored once ``flush()`` returns."""
        return 0

    def counters(self) -> Mapping[str, int]:
        """Sink-specific counters for the periodic report (written, dropped, retries, …)."""
        return {}


def describe_options(options: Sequence[Option], settings: SimpleNamespace) -> str:
    """``name=value, …`` for a log line: secret options as ``***``, URL passwords masked."""
    shown = []
    for option in options:
        value = getattr(settings, option.attribute)
        text = "***" if option.secret and value else mask_secrets(repr(value))
        shown.append(f"{option.name}={text}")
    return ", ".join(shown) or "no options"
