"""Selectors over labels, names, images and hosts, in the spirit of docker ps --filter."""

from __future__ import annotations

import pytest
from support.samples import make_stats

from statspout.selectors import BadSelector, Selector, SelectorFilter

WEB = make_stats(name="web-1", image="nginx:1.27", host="docker-a",
                 labels={"env": "prod", "team": "a=b", "empty": ""})


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("label=env", True),
        ("label=missing", False),
        ("label=env=prod", True),
        ("label=env=dev", False),
        ("label=env!=dev", True),
        ("label=env!=prod", False),
        ("label=missing!=x", True),
        ("label=team=a=b", True),  # the first "=" ends the key, the rest is the value
        ("label=empty=", True),
        ("label=empty", True),
        ("name=web-*", True),
        ("name=web", False),
        ("image=nginx:*", True),
        ("image=postgres*", False),
        ("host=docker-?", True),
        ("host=other", False),
    ],
)
def test_selector_matches(text, matches):
    selector = Selector.parse(text)
    assert selector.matches(WEB) is matches
    assert str(selector) == text


@pytest.mark.parametrize("text", ["env=prod", "label=", "name=", "colour=red", "label"])
def test_bad_selectors_say_what_a_selector_is(text):
    with pytest.raises(BadSelector, match="selector|nothing after"):
        Selector.parse(text)


def test_any_include_and_exclude_wins():
    selector_filter = SelectorFilter.parse(include=["label=env=dev", "name=web-*"],
                                           exclude=["image=nginx:*"])
    assert not selector_filter.passes(WEB)  # included by name, excluded by image
    assert SelectorFilter.parse(include=["label=env=dev", "name=web-*"]).passes(WEB)
    assert not SelectorFilter.parse(include=["label=env=dev"]).passes(WEB)
    assert SelectorFilter().passes(WEB)
