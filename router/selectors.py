"""Selectors over container metadata, in the spirit of ``docker ps --filter``.

    label=KEY            the container has label KEY (any value)
    label=KEY=VALUE      label KEY has exactly VALUE
    label=KEY!=VALUE     label KEY is absent or has another value
    name=GLOB            the container name matches the shell glob
    image=GLOB           the image matches the shell glob
    host=GLOB            the collector's host name matches the shell glob
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
        if key.endswith("!") and sep:
            return cls("label", key[:-1], value, negated=True)
        return cls("label", key, value if sep else None)

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
