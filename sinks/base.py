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
from statspout.wire import ContainerEvent, ContainerState, ContainerStats, EngineInfo, Message


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
    metavar: str | None = None  # the value's name in --help (URL, SECONDS, …); else from type

    @property
    def attribute(self) -> str:
        return self.name.replace("-", "_").replace(".", "_")


class HandlingFailed(Exception):
    """Raised by ``Sink.handle_batch`` once it has offered every message: the (method name,
    exception) of each that failed, so that the runtime counts each as before."""

    def __init__(self, failures: list[tuple[str, Exception]]) -> None:
        super().__init__(f"{len(failures)} messages failed; the first: {failures[0][1]!r}")
        self.failures = failures


# The method that takes a message of each kind.
_METHODS = {"stats": "write", "event": "handle_event", "state": "handle_state",
            "engine": "handle_engine"}


class Sink:
    """Base class of every sink. Subclasses set ``name`` and ``options`` and override ``write``.

    Lifecycle: ``__init__(settings)`` → ``open()`` → ``handle_batch`` (which calls ``write``,
    ``handle_event``, …) and ``flush`` many times → ``close()``. An exception from ``write`` or
    ``handle_event`` is counted and logged by the runtime, and the worker goes on; one from
    ``open`` ends the worker with an error.
    """

    name: ClassVar[str] = ""
    options: ClassVar[Sequence[Option]] = ()
    # The kinds of message ("stats", "state", "engine") the sink may still hold after flush()
    # and counts in ``unsettled``: the runtime checkpoints only past those it has settled.
    buffered_kinds: ClassVar[frozenset[str]] = frozenset({"stats"})

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

    def handle_batch(self, messages: Sequence[Message]) -> None:
        """The messages of one router message (a batch, or a single one), in order: samples,
        events, and the states and engine messages of a sink that overrides their methods.
        This default hands each to its method (``write``, ``handle_event``, …) and then raises
        HandlingFailed naming those that raised; a sink that gains by taking many at once
        overrides it (an exception of its own counts as one sink error)."""
        failures: list[tuple[str, Exception]] = []
        for message in messages:
            method = _METHODS[message.kind]
            try:
                getattr(self, method)(message)
            except Exception as exc:  # the others still go to the sink; the runtime counts
                failures.append((method, exc))
        if failures:
            raise HandlingFailed(failures)

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
        """How many of the latest messages of ``buffered_kinds`` given to the sink are not yet
        durably in the store after ``flush()`` returned (a sink with a write buffer of its own:
        those still in it).
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
