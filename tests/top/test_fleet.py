"""The fleet table: latest sample per container, states from events, staleness from the
sample timestamps, and its bounds."""

from __future__ import annotations

from support.samples import make_event, make_state, make_stats

from statspout.top.fleet import PAUSED, RUNNING, STOPPED, FleetTable

S = 1_000_000_000  # ns
T0 = 1_795_880_400 * S


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sample(name: str, at_s: float, host: str = "a", **figures):
    return make_stats(host=host, id=f"id-{host}-{name}", name=name,
                      timestamp=T0 + int(at_s * S), **figures)


def rows_by_name(table: FleetTable) -> dict:
    return {row.name: row for row in table.snapshot().rows}


def test_keeps_the_latest_sample_per_host_and_container():
    table = FleetTable(clock=Clock())
    table.put(sample("web", 0, cpu_percent=1.0))
    table.put(sample("web", 1, cpu_percent=2.0))
    table.put(sample("web", 0, host="b", cpu_percent=3.0))  # same name, other host
    rows = table.snapshot().rows
    assert sorted((r.host, r.sample.cpu_percent) for r in rows) == [("a", 2.0), ("b", 3.0)]


def test_a_container_whose_samples_stopped_is_stale_by_its_hosts_timestamps():
    clock = Clock()
    table = FleetTable(stale_intervals=3, clock=clock)
    for second in range(5):  # interval 1 s, seen from the timestamps
        table.put(sample("quiet", second))
        table.put(sample("busy", second))
    for second in range(5, 8):
        table.put(sample("busy", second))
    rows = rows_by_name(table)
    assert not rows["quiet"].stale and rows["quiet"].lag_s == 3.0  # 3 intervals: not yet
    table.put(sample("busy", 8))
    rows = rows_by_name(table)
    assert rows["quiet"].stale and not rows["busy"].stale
    assert table.snapshot().hosts["a"].interval_s == 1.0


def test_until_two_samples_show_the_interval_the_default_is_assumed():
    table = FleetTable(default_interval_s=5, stale_intervals=3, clock=Clock())
    table.put(sample("one", 0))
    table.put(sample("other", 14))  # 14 s behind: under 3 × 5 s
    assert not rows_by_name(table)["one"].stale
    table.put(sample("other", 16))
    assert rows_by_name(table)["one"].stale


def test_a_silent_host_marks_all_its_containers_by_arrival_time():
    clock = Clock()
    table = FleetTable(default_interval_s=1, stale_intervals=3, clock=clock)
    table.put(sample("web", 0))
    table.put(sample("db", 0, host="b"))
    clock.now += 2.5
    table.put(sample("db", 2.5, host="b"))
    clock.now += 1.0  # host a silent for 3.5 s, more than 3 intervals of 1 s
    snapshot = table.snapshot()
    assert snapshot.hosts["a"].stale and not snapshot.hosts["b"].stale
    assert snapshot.hosts["a"].last_seen_s == 3.5
    assert {r.name: r.stale for r in snapshot.rows} == {"web": True, "db": False}


def test_events_stop_pause_rename_and_destroy():
    table = FleetTable(clock=Clock())
    table.put(sample("web", 0))
    ident = {"host": "a", "id": "id-a-web"}
    table.handle_event(make_event("stop", name="web", **ident))
    assert rows_by_name(table)["web"].state == STOPPED  # kept, and marked
    table.handle_event(make_event("start", name="web", **ident))
    table.handle_event(make_event("pause", name="web", **ident))
    assert rows_by_name(table)["web"].state == PAUSED
    table.handle_event(make_event("unpause", name="web", **ident))
    table.handle_event(make_event("rename", name="shop", **ident))
    assert rows_by_name(table)["shop"].state == RUNNING
    table.handle_event(make_event("destroy", name="shop", **ident))
    assert table.snapshot().rows == [] and table.counts.destroyed == 1


def test_a_sample_after_a_stop_means_it_runs_again():
    table = FleetTable(clock=Clock())
    table.put(sample("web", 0))
    table.handle_event(make_event("stop", host="a", id="id-a-web", name="web"))
    table.put(sample("web", 1))
    assert rows_by_name(table)["web"].state == RUNNING


def test_bounded_by_max_containers_and_forget_after_counted():
    clock = Clock()
    table = FleetTable(max_containers=2, forget_after_s=60, clock=clock)
    for name in ("a1", "a2", "a3"):
        table.put(sample(name, 0))
    assert sorted(rows_by_name(table)) == ["a1", "a2"] and table.counts.table_full == 1
    table.put(sample("a1", 1))  # a known container is always updated
    assert table.counts.table_full == 1
    clock.now += 61
    table.put(sample("a2", 62))
    assert sorted(rows_by_name(table)) == ["a2"] and table.counts.forgotten == 1


def test_state_messages_keep_an_exited_container_and_carry_status_and_restarts():
    clock = Clock()
    table = FleetTable(clock=clock)
    table.put(sample("web", 0))
    table.put_state(make_state(host="a", id="id-a-web", name="web", status="running",
                               exit_code=None, restart_count=0))
    # Known only by its state: exited before the view started.
    table.put_state(make_state(host="a", id="id-a-done", name="done", status="exited"))
    rows = rows_by_name(table)
    assert rows["web"].state == RUNNING and rows["web"].status.restart_count == 0
    assert rows["done"].sample is None and rows["done"].state == STOPPED
    assert not rows["done"].stale  # no samples are due from it
    # It crashes and restarts: stopped by its state, running again by its next one.
    table.put_state(make_state(host="a", id="id-a-web", name="web", status="restarting",
                               restart_count=1))
    assert rows_by_name(table)["web"].state == STOPPED
    table.put_state(make_state(host="a", id="id-a-web", name="web", status="running",
                               exit_code=None, restart_count=1))
    assert rows_by_name(table)["web"].state == RUNNING
    table.handle_event(make_event("rename", host="a", id="id-a-done", name="finished"))
    assert "finished" in rows_by_name(table) and table.counts.states == 4
