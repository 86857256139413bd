"""The documentation says what the code does: the wire schema page shows every field of the one
definition in statspout/wire.py, with its type, unit and limits, as statspout/wire_docs.py
writes them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from statspout import wire, wire_docs

DOCS = Path(__file__).resolve().parents[1] / "docs"
SCHEMA_PAGE = DOCS / "wire-schema.md"


def test_the_schema_page_has_a_table_for_every_kind():
    assert wire_docs.marked_kinds(SCHEMA_PAGE.read_text()) == list(wire_docs.KINDS)


def test_the_schema_page_tables_are_the_field_list():
    text = SCHEMA_PAGE.read_text()
    assert wire_docs.rewrite(text) == text, (
        "docs/wire-schema.md differs from statspout/wire.py: run "
        "`python -m statspout.wire_docs docs/wire-schema.md`")


@pytest.mark.parametrize("kind", list(wire_docs.KINDS))
def test_every_field_row_says_type_unit_and_limits(kind: str):
    section = SCHEMA_PAGE.read_text().split(f"<!-- fields: {kind} -->", 1)[1]
    section = section.split("<!-- end fields -->", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \|", section, re.MULTILINE)
    specs = wire_docs.KINDS[kind]
    assert [name for name, *_ in rows] == [spec.name for spec in specs]
    for (name, type_text, unit, limit), spec in zip(rows, specs, strict=True):
        assert type_text.strip().startswith(wire_docs.TYPE_NAMES[spec.type]), name
        assert (" or null" in type_text) == spec.nullable, name
        assert unit.strip() == (spec.unit or "—"), name
        assert limit.strip() == spec.limit, name


def test_the_schema_page_names_the_current_version():
    assert f"version {wire.SCHEMA_VERSION}" in SCHEMA_PAGE.read_text()
