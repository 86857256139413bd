"""The routes file: what loads, and the one-line errors of what does not."""

from __future__ import annotations

import pytest

from statspout.router.routes_file import BadRoutes, load_routes

GOOD = """
[routes.prod]
include = ["label=env=prod"]
exclude = ["name=*-debug"]

[routes.batch]
include = ["image=registry.local/batch/*", "label=tier=batch"]   # any one matches

[routes.everything]
"""


def write(tmp_path, text: str):
    path = tmp_path / "routes.toml"
    path.write_text(text)
    return path


def test_loads_routes_in_file_order(tmp_path) -> None:
    routes = load_routes(write(tmp_path, GOOD))
    assert list(routes) == ["prod", "batch", "everything"]
    assert [str(s) for s in routes["prod"].include] == ["label=env=prod"]
    assert [str(s) for s in routes["prod"].exclude] == ["name=*-debug"]
    assert len(routes["batch"].include) == 2
    assert routes["everything"].include == () and routes["everything"].exclude == ()


def test_empty_file_has_no_routes(tmp_path) -> None:
    assert load_routes(write(tmp_path, "")) == {}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[routes.prod\n", "not valid TOML"),
        ('[routes.prod]\ninclude = ["colour=red"]\n', "'colour=red' is not a selector"),
        ('[routes.prod]\ninclude = "label=env"\nwhere = 1\n', "unknown key(s) where"),
        ("[routes.all]\n", "built in"),
        ('[routes."a b"]\n', "names are letters"),
        ("[route.prod]\n", "unknown top-level key(s) route"),
        ("[routes.prod]\ninclude = [1]\n", "include must be a list of selector strings"),
        ("routes = 3\n", "must be tables"),
    ],
)
def test_bad_files_give_one_line_naming_the_file(tmp_path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BadRoutes) as caught:
        load_routes(path)
    message = str(caught.value)
    assert fragment in message
    assert str(path) in message
    assert "\n" not in message


def test_missing_file(tmp_path) -> None:
    with pytest.raises(BadRoutes, match="No such file"):
        load_routes(tmp_path / "absent.toml")
