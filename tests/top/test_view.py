"""Sorting, filtering with the router's selectors, host totals, and the state the keys change."""

from __future__ import annotations

import pytest
from support.samples import make_state, make_stats

from statspout.top import view
from statspout.top.fleet import RUNNING, STOPPED, HostSeen, Row
from statspout.top.state import ViewState


def row(name: str, host: str = "a", state: str = RUNNING, stale: bool = False, **figures) -> Row:
    return Row(make_stats(host=host, id=f"{host}-{name}", name=name, **figures), state, stale, 0.0)


ROWS = [
    row("web", cpu_percent=5.0, mem_usage=300, pids=2, image="nginx:1",
        labels={"tier": "front"}),
    row("db", host="b", cpu_percent=80.0, mem_usage=100, pids=9, image="postgres:16",
        labels={"tier": "data"}),
    row("cache", cpu_percent=None, mem_usage=200, pids=1, image="redis:7", labels={}),
]


def names(rows) -> list[str]:
    return [r.name for r in rows]


@pytest.mark.parametrize(("column", "expected"), [
    ("cpu", ["db", "web", "cache"]),  # no CPU figure yet sorts last
    ("mem", ["web", "cache", "db"]),
    ("pids", ["db", "web", "cache"]),
    ("name", ["cache", "db", "web"]),
    ("host", ["cache", "web", "db"]),  # then by name within a host
])
def test_sort_by_every_column_in_its_natural_order(column, expected):
    assert names(view.sort_rows(ROWS, column)) == expected
    backwards = names(view.sort_rows(ROWS, column, reverse=True))
    if column == "host":  # within a host, still A→Z by name
        assert backwards == ["db", "cache", "web"]
    else:
        assert backwards == expected[::-1]


def test_every_column_has_a_distinct_key():
    keys = [c.key for c in view.COLUMNS.values()]
    assert len(set(keys)) == len(keys) == 10
    assert not set(keys) & {"q", "r", "/"}  # quit, reverse, filter


@pytest.mark.parametrize(("text", "expected"), [
    ("", ["web", "db", "cache"]),
    ("host=b", ["db"]),
    ("name=c*", ["cache"]),
    ("image=nginx:*", ["web"]),
    ("label=tier", ["web", "db"]),
    ("label=tier=data", ["db"]),
    ("label=tier!=data", ["web", "cache"]),
    ("host=a -name=web", ["cache"]),  # exclude wins, as the router's --exclude
    ("name=web name=db", ["web", "db"]),  # any include, as the router's --include
    ("ach", ["cache"]),  # a bare word: name=*ach*
])
def test_filter_with_the_routers_selectors(text, expected):
    assert names(view.filter_rows(ROWS, view.parse_filter(text))) == expected


def test_a_bad_selector_is_refused_naming_it():
    with pytest.raises(view.BadSelector, match="colour=red"):
        view.parse_filter("host=a colour=red")


def test_host_totals_count_only_running_reporting_containers():
    rows = ROWS + [row("gone", state=STOPPED, cpu_percent=50.0, mem_usage=1000),
                   row("quiet", stale=True, cpu_percent=40.0, mem_usage=1000)]
    hosts = {"a": HostSeen("a", 0.5, 5.0, False), "b": HostSeen("b", 20.0, 5.0, True)}
    lines = {line.host: line for line in view.host_lines(rows, hosts)}
    a, b = lines["a"], lines["b"]
    assert (a.containers, a.stale, a.cpu_percent, a.mem_usage, a.pids) == (4, 2, 5.0, 500, 3)
    assert a.last_seen_s == 0.5 and not a.host_silent
    assert (b.containers, b.cpu_percent, b.host_silent) == (1, 80.0, True)


def test_the_same_sort_key_twice_flips_the_order_and_bad_filters_keep_the_old_one():
    state = ViewState()
    assert state.sort_by_key("m") and (state.sort_column, state.reverse) == ("mem", False)
    assert state.sort_by_key("m") and state.reverse
    assert state.sort_by_key("c") and (state.sort_column, state.reverse) == ("cpu", False)
    assert not state.sort_by_key("z")
    state.set_filter("host=a")
    with pytest.raises(view.BadSelector):
        state.set_filter("bogus=1")
    assert state.filter_text == "host=a"


def test_rows_with_a_state_sort_by_status_and_restarts_and_filter_without_a_sample():
    crashed = Row(None, STOPPED, False, 0.0, make_state(name="crashed", restart_count=2))
    healthy = Row(ROWS[0].sample, RUNNING, False, 0.0,
                  make_state(name="web", status="running", restart_count=0))
    rows = [crashed, healthy, ROWS[2]]  # the last: no state at all
    assert names(view.sort_rows(rows, "restarts")) == ["crashed", "web", "cache"]
    assert names(view.sort_rows(rows, "status")) == ["cache", "crashed", "web"]
    assert names(view.sort_rows(rows, "cpu"))[-1] == "crashed"  # no figures: last
    assert names(view.filter_rows(rows, view.parse_filter("crash"))) == ["crashed"]
