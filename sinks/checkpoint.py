"""Where a sink is in its route, kept across restarts: the last router message it has durably
handed to its store, as (router run id, route sequence number), in a small state file.

The file is replaced atomically (write a temporary file, fsync, rename), so a sink killed at any
moment finds either the previous position or the new one. The position only ever covers
messages the sink's store has settled (``Sink.unsettled``), so what a crash loses is what the
router replays to the restarted sink (``sinks/resume.py``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("statspout.sink")

CHECKPOINT_VERSION = 1


def default_state_dir() -> str:
    """$XDG_STATE_HOME/statspout, else ~/.local/state/statspout."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "statspout")


@dataclass(frozen=True, order=True)
class Position:
    """A message of a route: the router run that numbered it, and its number in that run."""

    run: int
    seq: int


class CheckpointFile:
    """The state file of one sink (by name) on one route."""

    def __init__(self, folder: str | Path, sink_name: str, route: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{sink_name}--{route}")
        self.path = Path(folder) / f"{safe}.json"
        self._saved: Position | None = None

    def load(self) -> Position | None:
        """The saved position; None when there is none or it cannot be read (logged)."""
        try:
            raw = json.loads(self.path.read_text())
            if raw.get("v") != CHECKPOINT_VERSION:
                raise ValueError(f"version {raw.get('v')!r}, expected {CHECKPOINT_VERSION}")
            position = Position(int(raw["run"], 16), int(raw["seq"]))
            if position.seq < 0:
                raise ValueError("negative seq")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("ignoring the checkpoint %s, it cannot be read (%s): starting from the "
                      "live stream", self.path, exc)
            return None
        self._saved = position
        return position

    def save(self, position: Position) -> None:
        """Replace the file with ``position``; nothing to do when it is already saved."""
        if position == self._saved:
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w") as file:
            json.dump({"v": CHECKPOINT_VERSION, "run": f"{position.run:016x}",
                       "seq": position.seq}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        self._saved = position


class SettledMark:
    """Follows which handled messages the sink has settled, to find the position to save.

    Every message handed to the sink is noted in order; samples also go into a line of those
    the sink may still hold. Given how many of the latest samples are unsettled, the settled
    position is just before the oldest of them (or the last message when none are).
    The line holds at most the sink's unsettled samples plus one flush interval's worth.
    """

    def __init__(self) -> None:
        self._pending: deque[Position] = deque()
        self.last: Position | None = None

    def handed(self, position: Position, is_sample: bool) -> None:
        self.last = position
        if is_sample:
            self._pending.append(position)

    def settled(self, unsettled: int) -> Position | None:
        while len(self._pending) > unsettled:
            self._pending.popleft()
        if self._pending:
            first = self._pending[0]
            return Position(first.run, first.seq - 1)
        return self.last
