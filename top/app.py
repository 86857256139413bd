"""The live view: a Textual app that redraws the fleet every refresh and answers keys.

The drawing is ``render.screen``'s lines in one Static widget, only the rows that fit, so a
redraw costs the same with 20 containers or 20,000 beyond sorting them. Keys: a column's key
(``c m % i b p h n``) sorts by it (again: the other way), ``r`` flips the order, ``/`` opens the
filter (Enter applies, Escape closes, an empty filter shows all), arrows and PgUp/PgDn scroll,
``q`` quits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.widgets import Input, Static

from statspout.top import render
from statspout.top.fleet import FleetTable, Snapshot
from statspout.top.state import Frame, ViewState, frame
from statspout.top.view import BadSelector

log = logging.getLogger("statspout.top")

# Scrolling keys: (direction, a screenful rather than one row).
_SCROLL = {"down": (1, False), "up": (-1, False), "pagedown": (1, True), "pageup": (-1, True)}


class RedrawTimes:
    """How long redraws take (snapshot, filter, sort, lay out), for the exit log line."""

    def __init__(self) -> None:
        self.count = 0
        self.total_s = 0.0
        self.max_s = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        self.max_s = max(self.max_s, seconds)

    def __str__(self) -> str:
        mean_ms = self.total_s / self.count * 1000 if self.count else 0.0
        return f"redraws={self.count} mean_ms={mean_ms:.2f} max_ms={self.max_s * 1000:.2f}"


class TopApp(App[None]):
    CSS = """
    #fleet { height: 1fr; }
    #filter { dock: bottom; display: none; height: 1; border: none; padding: 0; }
    #filter.open { display: block; }
    """
    ENABLE_COMMAND_PALETTE = False
    AUTO_FOCUS = None  # keys go to the view until "/" opens the filter box

    def __init__(
        self,
        table: FleetTable,
        state: ViewState,
        *,
        refresh_s: float,
        describe_source: str,
        problems: Callable[[], str],
    ) -> None:
        # The terminal's own colours and background: it looks like the shell it runs in, over
        # SSH as well, and a light terminal stays light.
        super().__init__(ansi_color=True)
        self._table = table
        self.state = state
        self._refresh_s = refresh_s
        self._source = describe_source
        self._problems = problems
        self._message = ""
        self._snapshot: Snapshot | None = None
        self._page = 1  # rows that fit, as last drawn
        self.redraw_times = RedrawTimes()

    def compose(self) -> ComposeResult:
        yield Static(id="fleet")
        yield Input(placeholder="selectors: name=web* host=b* label=k=v -image=x", id="filter")

    def on_mount(self) -> None:
        self.set_interval(self._refresh_s, self.redraw)
        self.redraw()

    def on_resize(self, _: events.Resize) -> None:
        self.redraw(fresh=False)

    def on_key(self, event: events.Key) -> None:
        filter_box = self.query_one("#filter", Input)
        if self.focused is filter_box:
            if event.key == "escape":
                self._close_filter()
                event.stop()
            return
        character = event.character or ""
        if character == "q":
            self.exit()
        elif character == "/":
            filter_box.value = self.state.filter_text
            filter_box.add_class("open")
            filter_box.focus()
        elif character == "r":
            self.state.reverse = not self.state.reverse
        elif event.key in _SCROLL:
            direction, page = _SCROLL[event.key]
            step = max(1, self._page) if page else 1
            self.state.offset = max(0, self.state.offset + direction * step)
        elif not self.state.sort_by_key(character):
            return
        event.stop()
        self.redraw(fresh=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            self.state.set_filter(event.value)
            self._message = ""
        except BadSelector as exc:
            self._message = f"filter not applied: {exc}"
        self._close_filter()

    def _close_filter(self) -> None:
        filter_box = self.query_one("#filter", Input)
        filter_box.remove_class("open")
        self.set_focus(None)
        self.redraw(fresh=False)

    def redraw(self, fresh: bool = True) -> None:
        """Draw the fleet; ``fresh=False`` (a key, a resize) sorts and filters the last
        snapshot again, so that keys answer at once and rows do not jump between refreshes."""
        started = time.perf_counter()
        if fresh or self._snapshot is None:
            self._snapshot = self._table.snapshot()
        shown = frame(self._snapshot, self.state)
        fleet = self.query_one("#fleet", Static)
        width, height = self.size.width, self.size.height
        if self.query_one("#filter", Input).has_class("open"):
            height -= 1
        self.state.offset = min(self.state.offset, max(0, len(shown.rows) - 1))
        screen = render.screen(
            shown.rows, shown.hosts, title=self._title(shown), status=self._status(),
            sort_column=self.state.sort_column, width=width, height=height,
            offset=self.state.offset,
        )
        self._page = screen.shown_rows
        fleet.update(Text("\n").join(screen.lines))
        self.redraw_times.add(time.perf_counter() - started)

    def _title(self, shown: Frame) -> str:
        """Most telling first: the end (the endpoint) is what an 80-column line cuts."""
        hosts = len(shown.hosts)
        parts = ["statspout-top", self._problems(),
                 f"{len(shown.rows)}/{shown.total} ctr {hosts} host{'s' * (hosts != 1)}",
                 f"sort {render.sort_title(self.state.sort_column, self.state.reverse)}"]
        if self.state.filter_text:
            parts.append(f"filter {self.state.filter_text}")
        parts.append(self._source)
        return "  ".join(part for part in parts if part)

    def _status(self) -> str:
        return self._message or f"{render.KEYS_HELP}  {render.LEGEND}"

