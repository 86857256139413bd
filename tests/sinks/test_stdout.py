"""The stdout sink's two formats, and SIGTERM handling of a real worker process."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

from support.samples import make_engine, make_event, make_state, make_stats

from statspout.sinks.stdout import LastPrinted, StdoutSink


def output_of(fmt: str, *messages) -> str:
    stream = io.StringIO()
    sink = StdoutSink(SimpleNamespace(format=fmt), stream=stream)
    for message in messages:
        handler = {"event": sink.handle_event, "state": sink.handle_state,
                   "engine": sink.handle_engine}.get(message.kind, sink.write)
        handler(message)
    sink.flush()
    return stream.getvalue()


def test_line_format_names_the_host_and_prints_figures_as_docker_stats_does():
    line = output_of("line", make_stats())
    # Memory in binary units, network received / sent and block I/O in decimal units.
    assert line == (
        "[test-host/web] 2026-11-28T15:40:02.500000Z CPU: 12.50%, MEM: 50MiB / 1.575GiB "
        "(3.10%), NET I/O: 3.4kB / 1.2kB, BLOCK I/O: 8.59GB / 4.1kB, PIDS: 3\n"
    )


def test_line_format_without_a_cpu_or_memory_figure_yet():
    line = output_of("line", make_stats(cpu_percent=None, mem_percent=None))
    assert "CPU: --," in line and "(--)" in line


def test_line_format_of_events():
    text = output_of("line", make_event("rename", name="new", old_name="old"))
    assert text == "[test-host/new] 2026-11-28T15:40:02.500000Z EVENT: rename from old\n"


def test_state_lines_are_printed_on_change_only():
    exited = make_state(1)
    repeat = make_state(2, timestamp=exited.timestamp + 10**9, health_failing_streak=5)
    restarted = make_state(3, status="running", exit_code=None, restart_count=3, health=None,
                           health_failing_streak=None, timestamp=exited.timestamp + 2 * 10**9)
    other = make_state(4, id="beef" * 16, name="db", status="created", exit_code=None,
                       health=None, health_failing_streak=None, restart_count=0)
    text = output_of("line", exited, repeat, restarted, other, restarted)
    assert text.splitlines() == [
        "[node-1/web] 2023-11-14T22:13:20.000000Z STATE: exited (exit 3, restarts 2, oom no, "
        "health unhealthy)",
        "[node-1/web] 2023-11-14T22:13:22.000000Z STATE: running (restarts 3, oom no)",
        "[node-1/db] 2023-11-14T22:13:20.000000Z STATE: created (restarts 0, oom no)",
    ]


def test_engine_lines_are_printed_on_change_only():
    engine = make_engine(1)
    text = output_of("line", engine, make_engine(2), make_engine(3, containers_running=4))
    assert text.splitlines() == [
        "[node-1] 2023-11-14T22:13:20.000000Z ENGINE: docker 20.10.24, running 3, paused 1, "
        "stopped 2, images 7, cpus 2, memory 16GiB",
        "[node-1] 2023-11-14T22:13:20.000000Z ENGINE: docker 20.10.24, running 4, paused 1, "
        "stopped 2, images 7, cpus 2, memory 16GiB",
    ]


def test_json_format_prints_every_state_and_engine_message_as_is():
    messages = (make_state(1), make_state(2), make_engine(3))
    records = [json.loads(line) for line in output_of("json", *messages).splitlines()]
    assert records == [m.to_dict() for m in messages]


def test_the_remembered_states_are_bounded_and_counted():
    printed = LastPrinted(limit=2)
    assert all(printed.changed(key, (1,)) for key in ("a", "b", "c"))
    assert printed.forgotten == 1
    assert printed.changed("a", (1,))  # forgotten: printed again
    assert not printed.changed("c", (1,))


def test_json_format_carries_every_field_exactly():
    sample = make_stats(name="naïve, \"quoted\" = name", rx_bytes=2**62)
    record = json.loads(output_of("json", sample))
    assert record == sample.to_dict()
