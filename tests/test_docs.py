"""The documentation says what the code does: the wire schema page lists every field of the
one definition in statspout/wire.py, with its type, unit and limits."""

from __future__ import annotations

import re
from pathlib import Path

from statspout import wire

DOCS = Path(__file__).resolve().parents[1] / "docs"


def documented_fields() -> dict[str, tuple[str, str, str]]:
    text = (DOCS / "wire-schema.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \|", text, re.MULTILINE)
    return {name: (kind.strip(), unit.strip(), limit.strip()) for name, kind, unit, limit in rows}


def test_every_wire_field_is_documented_with_type_and_unit():
    documented = documented_fields()
    for spec in wire.STATS_FIELDS + wire.EVENT_FIELDS:
        assert spec.name in documented, f"{spec.name} is missing from docs/wire-schema.md"
        kind, unit, limit = documented[spec.name]
        assert kind.startswith({"int": "integer", "float": "float", "str": "string",
                                "labels": "map"}[spec.type]), spec.name
        assert (" or null" in kind) == spec.nullable, spec.name
        assert unit == (spec.unit or "—"), spec.name
        assert limit == spec.limit, spec.name


def test_the_schema_page_names_the_current_version():
    assert f"version {wire.SCHEMA_VERSION}" in (DOCS / "wire-schema.md").read_text()
