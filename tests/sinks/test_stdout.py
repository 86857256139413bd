"""The stdout sink's two formats, and SIGTERM handling of a real worker process."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

from support.samples import make_event, make_stats

from statspout.sinks.stdout import StdoutSink


def output_of(fmt: str, *messages) -> str:
    stream = io.StringIO()
    sink = StdoutSink(SimpleNamespace(format=fmt), stream=stream)
    for message in messages:
        (sink.handle_event if message.kind == "event" else sink.write)(message)
    sink.flush()
    return stream.getvalue()


def test_line_format_is_the_original_one():
    line = output_of("line", make_stats())
    assert line == (
        "[web] 2026-11-28T15:40:02.500000Z CPU: 12.50%, MEM: 3.10% [52428800 B] "
        "Tx/Rx: 1200/3400\n"
    )


def test_line_format_without_a_cpu_figure_yet():
    assert "CPU: -," in output_of("line", make_stats(cpu_percent=None))


def test_line_format_of_events():
    text = output_of("line", make_event("rename", name="new", old_name="old"))
    assert text == "[new] 2026-11-28T15:40:02.500000Z EVENT: rename from old\n"


def test_json_format_carries_every_field_exactly():
    sample = make_stats(name="naïve, \"quoted\" = name", rx_bytes=2**62)
    record = json.loads(output_of("json", sample))
    assert record == sample.to_dict()
