"""The view's state (sort, filter, scroll) and one frame of it from a fleet snapshot: the part
of the live view that is not drawing, shared with ``--once``."""

from __future__ import annotations

from dataclasses import dataclass, field

from statspout.selectors import SelectorFilter
from statspout.top import view
from statspout.top.fleet import Snapshot
from statspout.top.view import COLUMN_OF_KEY, HostLine


@dataclass
class ViewState:
    sort_column: str = "cpu"
    reverse: bool = False
    filter_text: str = ""
    selectors: SelectorFilter = field(default_factory=SelectorFilter)
    offset: int = 0  # first row shown

    def sort_by_key(self, key: str) -> bool:
        """A column's key sorts by it; its key again flips the order. False: not a sort key."""
        column = COLUMN_OF_KEY.get(key)
        if column is None:
            return False
        if column.name == self.sort_column:
            self.reverse = not self.reverse
        else:
            self.sort_column, self.reverse = column.name, False
        self.offset = 0
        return True

    def set_filter(self, text: str) -> None:
        """Raises view.BadSelector, leaving the current filter in place."""
        self.selectors = view.parse_filter(text)
        self.filter_text = text.strip()
        self.offset = 0


@dataclass(frozen=True)
class Frame:
    rows: list[view.Row]
    hosts: list[HostLine]
    total: int  # containers in the table before filtering


def frame(snapshot: Snapshot, state: ViewState) -> Frame:
    shown = view.filter_rows(snapshot.rows, state.selectors)
    return Frame(view.sort_rows(shown, state.sort_column, state.reverse),
                 view.host_lines(shown, snapshot.hosts), len(snapshot.rows))
