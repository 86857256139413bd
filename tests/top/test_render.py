"""Lines of the live view fitted to a terminal, and the --once text and JSON."""

from __future__ import annotations

import time

import pytest
from support.samples import make_state, make_stats

from statspout.top import render, view
from statspout.top.fleet import PAUSED, RUNNING, STOPPED, HostSeen, Row

GiB = 1024**3


def row(name: str, host: str = "node-1", state: str = RUNNING, stale: bool = False,
        **figures) -> Row:
    return Row(make_stats(host=host, id=f"{host}-{name}", name=name, **figures), state, stale,
               0.0)


def big_row(index: int) -> Row:
    """Figures as wide as docker stats ever prints them, and a long name."""
    return row(f"shop-production-checkout-worker-{index}", host="worker-node-017.example",
               cpu_percent=1234.56, mem_usage=1023 * 1024**2, mem_limit=1023 * GiB,
               mem_percent=99.99, rx_bytes=999_400_000, tx_bytes=123_400_000_000,
               blk_read_bytes=987_000_000_000, blk_write_bytes=45_600_000, pids=32768)


def hosts_for(rows):
    return view.host_lines(rows, {r.host: HostSeen(r.host, 0.4, 5.0, False) for r in rows})


def test_marks():
    assert render.mark(row("a")) == " "
    assert render.mark(row("a", stale=True)) == render.MARK_STALE
    assert render.mark(row("a", state=STOPPED, stale=True)) == render.MARK_STOPPED
    assert render.mark(row("a", state=PAUSED)) == render.MARK_PAUSED


def test_the_widest_figures_fit_80_by_24_whole_and_names_are_cut():
    rows = [big_row(i) for i in range(40)]
    screen = render.screen(rows, hosts_for(rows), title="t" * 100, status="s" * 100,
                           sort_column="cpu", width=80, height=24)
    text = [line.plain for line in screen.lines]
    assert len(text) == 24 and max(map(len, text)) <= 80
    table = text[text.index(next(t for t in text if "CPU %" in t)) + 1:]
    assert screen.shown_rows == len(table) - 1  # all rows but the status line
    first = table[0]
    for whole in ("1234.56%", "1023MiB", "99.99%", "32768"):
        assert whole in first, (whole, first)
    assert render.ELLIPSIS in first  # the host or name gave way, not a figure


def test_typical_rows_show_every_column_at_80():
    rows = [row(f"web-{i}", mem_usage=52_428_800, mem_limit=GiB) for i in range(3)]
    screen = render.screen(rows, hosts_for(rows), title="t", status="s", sort_column="cpu",
                           width=80, height=24)
    head = screen.lines[2].plain
    assert head.split() == ["HOST", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM",
                            "%", "NET", "I/O", "BLOCK", "I/O", "PIDS"]
    assert "50MiB / 1GiB" in screen.lines[3].plain


def test_a_short_name_leaves_the_host_whole():
    rows = [row("app-0424", host="node-0", mem_usage=425 * 1024**2, mem_limit=8 * GiB,
                rx_bytes=40_500, tx_bytes=24_300, blk_read_bytes=1_740_000,
                blk_write_bytes=8_190, cpu_percent=99.5, mem_percent=5.19)]
    screen = render.screen(rows, hosts_for(rows), title="t", status="s", sort_column="cpu",
                           width=80, height=24)
    assert screen.lines[3].plain.split()[:2] == ["node-0", "app-0424"]


def test_many_hosts_leave_room_for_the_table():
    rows = [row("web", host=f"node-{i:02d}") for i in range(30)]
    screen = render.screen(rows, hosts_for(rows), title="t", status="s", sort_column="cpu",
                           width=80, height=24)
    text = [line.plain for line in screen.lines]
    assert sum(t.startswith("HOST ") for t in text) == 5
    assert "… 25 more hosts" in text[6]
    assert screen.shown_rows == 24 - 1 - 6 - 1 - 1


def test_once_text_is_whole_and_parses_by_header_columns():
    rows = [big_row(1), row("web", state=STOPPED, stale=True)]
    text = render.snapshot_text(rows, hosts_for(rows))
    lines = text.splitlines()
    header = next(line for line in lines if "CPU %" in line)
    table = lines[lines.index(header) + 1:]
    assert "shop-production-checkout-worker-1" in table[0]
    assert "1023MiB / 1023GiB" in table[0]
    assert table[1].startswith(render.MARK_STOPPED)
    assert lines[0].startswith("HOST node-1  1 ctr (1 !)")


def test_once_json_carries_exact_figures():
    rows = [big_row(1)]
    snapshot = render.snapshot_json(rows, hosts_for(rows),
                                    {"worker-node-017.example": HostSeen("w", 0.4, 5.0, False)})
    container = snapshot["containers"][0]
    assert container["mem_usage_bytes"] == 1023 * 1024**2
    assert container["blk_read_bytes"] == 987_000_000_000
    assert container["state"] == "running" and container["stale"] is False
    assert snapshot["hosts"][0]["pids"] == 32768


@pytest.mark.parametrize(("column", "reverse", "title"), [
    ("cpu", False, "CPU % ↓"), ("name", False, "NAME ↑"), ("cpu", True, "CPU % ↑")])
def test_sort_title(column, reverse, title):
    assert render.sort_title(column, reverse) == title


def state_row(name: str, **state) -> Row:
    """A container known by its sample and its state message (wire 1.1)."""
    base = row(name, mem_usage=52_428_800, mem_limit=GiB)
    return Row(base.sample, RUNNING, False, 0.0, make_state(name=name, **state))


def test_status_and_restarts_fit_80_by_24_with_the_widest_figures():
    now = time.time_ns()
    rows = [Row(big_row(i).sample, RUNNING, False, 0.0,
                make_state(name=f"w{i}", status="exited", exit_code=137, restart_count=12345,
                           finished_at=now - 3000 * 10**9)) for i in range(30)]
    screen = render.screen(rows, hosts_for(rows), title="t", status="s", sort_column="status",
                           width=80, height=24)
    text = [line.plain for line in screen.lines]
    assert len(text) == 24 and max(map(len, text)) <= 80
    head = next(t for t in text if "CPU %" in t)
    assert "STATUS" in head
    for whole in ("1234.56%", "1023MiB", "99.99%", "32768", "Exited (137) 50m ago"):
        assert whole in text[text.index(head) + 1], whole


def test_typical_rows_with_a_state_show_status_health_and_restarts_at_80():
    now = time.time_ns()
    rows = [state_row("web-0", status="running", health="healthy", exit_code=None,
                      restart_count=0, started_at=now - 300 * 10**9),
            Row(None, STOPPED, False, 0.0, make_state(name="crashed", restart_count=2,
                                                      finished_at=now - 120 * 10**9))]
    screen = render.screen(rows, hosts_for(rows), title="t", status="s", sort_column="name",
                           width=80, height=24)
    text = [line.plain for line in screen.lines]
    assert max(map(len, text)) <= 80
    head = next(t for t in text if "CPU %" in t)
    # At 80 columns RESTARTS gives way after BLOCK I/O; STATUS stays.
    assert head.split()[-2:] == ["PIDS", "STATUS"] and "NET I/O" in head
    crashed = next(t for t in text if "crashed" in t)
    assert crashed.startswith(render.MARK_STOPPED)
    assert crashed.split()[-5:] == ["--", "Exited", "(3)", "2m", "ago"]
    assert "Up 5m (healthy)" in next(t for t in text if "web-0" in t)
    wide = render.screen(rows, hosts_for(rows), title="t", status="s", sort_column="name",
                         width=120, height=24)
    wide_text = [line.plain for line in wide.lines]
    assert next(t for t in wide_text if "CPU %" in t).split()[-2:] == ["STATUS", "RESTARTS"]
    assert next(t for t in wide_text if "crashed" in t).split()[-5:] == [
        "Exited", "(3)", "2m", "ago", "2"]
    once = render.snapshot_json(rows, hosts_for(rows), {"node-1": HostSeen("node-1", 0.4, 5.0,
                                                                           False)})
    crashed_json = next(c for c in once["containers"] if c["name"] == "crashed")
    assert (crashed_json["status"], crashed_json["exit_code"], crashed_json["restart_count"],
            crashed_json["pids"]) == ("exited", 3, 2, None)
