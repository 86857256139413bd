"""Selectors over labels, names, images and hosts, in the spirit of docker ps --filter."""

from __future__ import annotations

import pytest
from support.samples import make_stats

from statspout.selectors import (
    KEY_SET_CACHE_LIMIT,
    BadSelector,
    LabelKeyFilter,
    Selector,
    SelectorFilter,
)

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


@pytest.mark.parametrize("text", ["env=prod", "label=", "name=", "colour=red", "label",
                                  "label==x", "label=!=x"])
def test_bad_selectors_say_what_a_selector_is(text):
    with pytest.raises(BadSelector, match=r"selector|nothing after|no label key"):
        Selector.parse(text)


def test_any_include_and_exclude_wins():
    selector_filter = SelectorFilter.parse(include=["label=env=dev", "name=web-*"],
                                           exclude=["image=nginx:*"])
    assert not selector_filter.passes(WEB)  # included by name, excluded by image
    assert SelectorFilter.parse(include=["label=env=dev", "name=web-*"]).passes(WEB)
    assert not SelectorFilter.parse(include=["label=env=dev"]).passes(WEB)
    assert SelectorFilter().passes(WEB)


# The label-key filter: which labels a sink carries (docs/labels.md).

KEYS = {"com.docker.compose.project": "shop", "com.docker.compose.service": "web",
        "com.example.team": "ops", "tier": "front", "_private": "x", "container_name": "x"}


@pytest.mark.parametrize(("include", "exclude", "expected"), [
    ((), (), ()),  # nothing named: no labels (Telegraf would take all)
    (("tier",), (), ("tier",)),
    (("tier", "absent"), (), ("tier",)),
    (("com.docker.compose.*",), (), ("com.docker.compose.project", "com.docker.compose.service")),
    (("com.*",), ("com.docker.*",), ("com.example.team",)),  # exclude wins
    (("tier",), ("t*",), ()),
    ((), ("com.*", "_*", "container_*"), ("tier",)),  # only excludes: all others
    (("*",), (), tuple(KEYS)),
    (("com.docker.compose.[ps]*",), (), ("com.docker.compose.project",
                                         "com.docker.compose.service")),
    (("?ier",), (), ("tier",)),
    (("TIER",), (), ()),  # case-sensitive, as label keys are
])
def test_label_key_filter_includes_and_excludes_keys_by_glob(include, exclude, expected):
    assert LabelKeyFilter.of(include, exclude).keys(KEYS) == expected


def test_refused_keys_never_pass_whatever_the_globs():
    keys = LabelKeyFilter.of(["*"], refuse=["container_name"], refuse_prefixes=("_",))
    assert "container_name" not in keys.keys(KEYS) and "_private" not in keys.keys(KEYS)
    assert "tier" in keys.keys(KEYS)


def test_the_answer_per_key_set_is_remembered_within_a_bound():
    keys = LabelKeyFilter.of(["k*"])
    for n in range(KEY_SET_CACHE_LIMIT + 10):
        assert keys.keys({f"k{n}": "v", "other": "v"}) == (f"k{n}",)
    assert len(keys._cache) <= KEY_SET_CACHE_LIMIT
