"""The label policy, written once (docs/labels.md): selectors over container metadata, in the
spirit of ``docker ps --filter`` (which containers pass: the router's routes and flags, the REST
sink's ``?label=``, statspout-top's filter), and the label-key filter (which labels a sink turns
into tags or label names: ``--influxdb.label-include``, ``--prometheus.label-include``).

Selectors:

    label=KEY            the container has label KEY (any value)
    label=KEY=VALUE      label KEY has exactly VALUE
    label=KEY!=VALUE     label KEY is absent or has another value
    name=GLOB            the container name matches the shell glob
    image=GLOB           the image matches the shell glob
    host=GLOB            the collector's host name matches the shell glob
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from statspout.wire import ContainerScoped

KINDS = ("label", "name", "image", "host")


class BadSelector(ValueError):
    pass


@dataclass(frozen=True)
class Selector:
    kind: str
    key: str  # label key, or the glob for name/image/host
    value: str | None = None  # label value, when one is given
    negated: bool = False

    @classmethod
    def parse(cls, text: str) -> Selector:
        kind, sep, rest = text.partition("=")
        if not sep or kind not in KINDS:
            raise BadSelector(
                f"{text!r} is not a selector (label=KEY, label=KEY=VALUE, label=KEY!=VALUE, "
                "name=GLOB, image=GLOB, host=GLOB)"
            )
        if not rest:
            raise BadSelector(f"{text!r}: nothing after {kind}=")
        if kind != "label":
            return cls(kind, rest)
        # Label keys never contain "=" (Docker refuses them), so the first "=" ends the key.
        key, sep, value = rest.partition("=")
        negated = key.endswith("!") and bool(sep)
        if negated:
            key = key[:-1]
        if not key:
            raise BadSelector(f"{text!r}: no label key")
        return cls("label", key, value if sep else None, negated)

    def matches(self, message: ContainerScoped) -> bool:
        if self.kind == "label":
            actual = message.labels.get(self.key)
            if self.negated:
                return actual != self.value
            return actual is not None and (self.value is None or actual == self.value)
        subject = {"name": message.name, "image": message.image, "host": message.host}[self.kind]
        return fnmatchcase(subject, self.key)

    def __str__(self) -> str:
        if self.kind != "label":
            return f"{self.kind}={self.key}"
        if self.value is None:
            return f"label={self.key}"
        return f"label={self.key}{'!=' if self.negated else '='}{self.value}"


@dataclass(frozen=True)
class SelectorFilter:
    """Passes a message when any include selector matches (or there are none) and no exclude
    selector matches: exclude wins over include."""

    include: tuple[Selector, ...] = ()
    exclude: tuple[Selector, ...] = ()

    @classmethod
    def parse(cls, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> SelectorFilter:
        return cls(
            tuple(Selector.parse(text) for text in include),
            tuple(Selector.parse(text) for text in exclude),
        )

    def passes(self, message: ContainerScoped) -> bool:
        if self.include and not any(s.matches(message) for s in self.include):
            return False
        return not any(s.matches(message) for s in self.exclude)


# Distinct label-key sets a LabelKeyFilter remembers its answer for; beyond it, it forgets all
# and starts again (the answer is cheap to recompute, the bound keeps memory flat).
KEY_SET_CACHE_LIMIT = 4096


@dataclass
class LabelKeyFilter:
    """Which label keys a sink carries, by include and exclude globs on keys, as Telegraf's
    ``docker_label_include`` / ``docker_label_exclude``: a key passes when it matches an include
    glob (or only excludes are given) and no exclude glob; exclude wins. Globs are shell globs
    (``*``, ``?``, ``[seq]``, ``[!seq]``), case-sensitive. Unlike Telegraf, no globs at all
    means no labels: every label a tag is a cardinality an operator should choose.

    ``refuse`` and ``refuse_prefixes`` name keys never passed whatever the globs (a sink's
    identity); a sink refuses such a key at start when it is named exactly (no glob)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    refuse: frozenset[str] = frozenset()
    refuse_prefixes: tuple[str, ...] = ()
    _cache: dict[frozenset[str], tuple[str, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @property
    def empty(self) -> bool:
        return not self.include and not self.exclude

    def refused(self, key: str) -> bool:
        return key in self.refuse or key.startswith(self.refuse_prefixes)

    def passes(self, key: str) -> bool:
        if self.empty or self.refused(key):
            return False
        if self.include and not any(fnmatchcase(key, glob) for glob in self.include):
            return False
        return not any(fnmatchcase(key, glob) for glob in self.exclude)

    def keys(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        """The keys of ``labels`` that pass, in the order of ``labels``."""
        if self.empty:
            return ()
        key_set = frozenset(labels)
        chosen = self._cache.get(key_set)
        if chosen is None:
            if len(self._cache) >= KEY_SET_CACHE_LIMIT:
                self._cache.clear()
            chosen = self._cache[key_set] = tuple(key for key in labels if self.passes(key))
        return chosen

    @classmethod
    def of(cls, include: Iterable[str] = (), exclude: Iterable[str] = (), *,
           refuse: Iterable[str] = (), refuse_prefixes: tuple[str, ...] = ()
           ) -> LabelKeyFilter:
        return cls(tuple(dict.fromkeys(include)), tuple(dict.fromkeys(exclude)),
                   frozenset(refuse), refuse_prefixes)


def is_glob(text: str) -> bool:
    """Whether ``text`` has a glob character (else it names one key exactly)."""
    return any(c in text for c in "*?[")
