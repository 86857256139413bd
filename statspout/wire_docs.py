"""The wire schema's field tables as Markdown: docs/wire-schema.md shows them as written here.

The tables are derived from the field list in ``wire.py`` (the one source of truth); the page
keeps each between ``<!-- fields: KIND -->`` and ``<!-- end fields -->`` markers, and
``python -m statspout.wire_docs docs/wire-schema.md`` writes them anew. ``tests/test_docs.py``
fails when the page and the field list differ.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from statspout import wire

KINDS: dict[str, tuple[wire.FieldSpec, ...]] = {
    "stats": wire.STATS_FIELDS,
    "event": wire.EVENT_FIELDS,
    "state": wire.STATE_FIELDS,
    "engine": wire.ENGINE_FIELDS,
    "batch": wire.BATCH_FIELDS,
}

TYPE_NAMES = {
    "int": "integer (64-bit)",
    "float": "float (64-bit)",
    "str": "string",
    "bool": "boolean",
    "labels": "map string → string",
    "int_map": "map string → integer",
    "int_maps": "map string → (map string → integer)",
    "items": "array of binary",
    "identities": "array of [string, string, string, map string → string]",
    "indexes": "array of integer",
}

_BLOCK = re.compile(r"(<!-- fields: (\w+) -->\n)(.*?)(<!-- end fields -->)", re.DOTALL)


def table(specs: Sequence[wire.FieldSpec]) -> str:
    """One kind's fields: name, type (with "or null"), unit, limits, meaning."""
    lines = ["| field | type | unit | limits | meaning |", "|---|---|---|---|---|"]
    for spec in specs:
        kind = TYPE_NAMES[spec.type] + (" or null" if spec.nullable else "")
        meaning = spec.description.replace("|", "\\|")
        lines.append(f"| `{spec.name}` | {kind} | {spec.unit or '—'} | {spec.limit} | {meaning} |")
    return "\n".join(lines) + "\n"


def rewrite(text: str) -> str:
    """The page with every marked table replaced by the one the field list gives."""
    def replace(match: re.Match[str]) -> str:
        start, kind, _old, end = match.groups()
        if kind not in KINDS:
            raise ValueError(f"the page marks a table of unknown kind {kind!r}")
        return start + table(KINDS[kind]) + end

    return _BLOCK.sub(replace, text)


def marked_kinds(text: str) -> list[str]:
    return [match.group(2) for match in _BLOCK.finditer(text)]


def main(argv: Sequence[str] | None = None) -> int:
    paths = list(sys.argv[1:] if argv is None else argv)
    if len(paths) != 1:
        print("usage: python -m statspout.wire_docs docs/wire-schema.md", file=sys.stderr)
        return 2
    path = Path(paths[0])
    path.write_text(rewrite(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
