"""Finding sink classes: by name in the ``statspout.sinks`` entry-point group, or by
``module:Class``. A user's package registers its sink the same way ours are registered."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from statspout.sinks.base import Sink

ENTRY_POINT_GROUP = "statspout.sinks"


class SinkNotFound(LookupError):
    pass


def available() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load(name: str | None = None, reference: str | None = None) -> type[Sink]:
    """The sink class registered as ``name``, or the one at ``reference`` ("module:Class")."""
    if reference:
        cls = _import_reference(reference)
    else:
        matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not matches:
            raise SinkNotFound(f"unknown sink {name!r}; known: {', '.join(available())}")
        try:
            cls = matches[0].load()
        except Exception as exc:
            raise SinkNotFound(f"sink {name!r} failed to load: {exc!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, Sink)):
        raise SinkNotFound(f"{reference or name!r} is not a statspout Sink subclass")
    if not cls.name:
        raise SinkNotFound(f"{cls.__qualname__} sets no name")
    return cls


def _import_reference(reference: str) -> object:
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise SinkNotFound(f"{reference!r} is not module:Class")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise SinkNotFound(f"cannot import {module_name!r}: {exc!r}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise SinkNotFound(f"module {module_name!r} has no {attribute!r}") from None
