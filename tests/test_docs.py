"""The documentation says what the code does: the wire schema page lists every field of the
one definition in statspout/wire.py, with its type and unit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from statspout import wire

DOCS = Path(__file__).resolve().parents[1] / "docs"


TYPES = {"int": "integer", "float": "float", "str": "string", "bool": "boolean",
         "labels": "map string → string", "int_map": "map string → integer",
         "int_maps": "map string → (map"}


def documented_fields(kind: str) -> dict[str, tuple[str, str]]:
    """The rows of the table under the heading of ``kind: "<kind>"``."""
    text = (DOCS / "wire-schema.md").read_text()
    section = text.split(f'### `kind: "{kind}"`', 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", section, re.MULTILINE)
    return {name: (kind.strip(), unit.strip()) for name, kind, unit in rows}


@pytest.mark.parametrize("kind", ["stats", "event", "state", "engine"])
def test_every_wire_field_is_documented_with_type_and_unit(kind):
    documented = documented_fields(kind)
    specs = {"stats": wire.STATS_FIELDS, "event": wire.EVENT_FIELDS,
             "state": wire.STATE_FIELDS, "engine": wire.ENGINE_FIELDS}[kind]
    assert list(documented) == [spec.name for spec in specs]
    for spec in specs:
        type_text, unit = documented[spec.name]
        assert type_text.startswith(TYPES[spec.type]), spec.name
        assert (" or null" in type_text) == spec.nullable, spec.name
        assert unit == (spec.unit or "—"), spec.name


def test_the_schema_page_names_the_current_version():
    assert f"version {wire.SCHEMA_VERSION}" in (DOCS / "wire-schema.md").read_text()
