"""The label-key options every sink that turns container labels into its own names shares:
``--<sink>.label-include`` / ``--<sink>.label-exclude`` (globs on label keys, docs/labels.md),
and the exact-key option each sink had before them, still read as an include."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable
from types import SimpleNamespace

from statspout.selectors import LabelKeyFilter, is_glob
from statspout.sinks.base import Option


def label_key_options(becomes: str, include_type: Callable[[str], str] = str
                      ) -> tuple[Option, Option]:
    """``label-include`` and ``label-exclude``; ``becomes`` says what a passing label becomes."""
    return (
        Option("label-include", f"glob on container label keys: matching labels become "
               f"{becomes} (repeatable, or a comma list; labels.md in the statspout "
               "documentation)", repeatable=True,
               type=include_type),
        Option("label-exclude", "glob on container label keys never carried, even when an "
               "include matches (repeatable, or a comma list)", repeatable=True),
    )


def refusing_exact(refused: Callable[[str], bool], why: str) -> Callable[[str], str]:
    """An option type that refuses (exit 2) a key named exactly that ``refused`` matches; a glob
    passes, and the keys it matches that ``refused`` drops are skipped (docs/labels.md)."""

    def parse(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError("an empty label key")
        if not is_glob(text) and refused(text):
            raise argparse.ArgumentTypeError(f"{text!r} cannot be a label {why}")
        return text

    return parse


def split_values(values: Iterable[str] | None) -> list[str]:
    """Each use of a repeatable option may itself be a comma list."""
    return [v.strip() for value in values or () for v in value.split(",") if v.strip()]


def label_key_filter(settings: SimpleNamespace, log: logging.Logger, sink: str,
                     deprecated: str, old: Iterable[str], *, refuse: Iterable[str] = (),
                     refuse_prefixes: tuple[str, ...] = ()) -> LabelKeyFilter:
    """The sink's filter from its settings: the includes, plus ``old``, the exact keys of its
    deprecated option ``deprecated`` (logged once, here, at start)."""
    old = list(old)
    if old:
        log.warning("%s: --%s.%s is deprecated: use --%s.label-include (the same keys, globs "
                    "allowed; labels.md in the statspout documentation)",
                    sink, sink, deprecated, sink)
    return LabelKeyFilter.of(
        [*split_values(getattr(settings, "label_include", None)), *old],
        split_values(getattr(settings, "label_exclude", None)),
        refuse=refuse, refuse_prefixes=refuse_prefixes)
