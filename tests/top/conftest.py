"""A terminal for statspout-top: a tmux session of its own, 80×24, on a private socket."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator, Sequence

import pytest

EXITED = "statspout-top exited with"


class Terminal:
    """statspout-top running in tmux; keys go in with send-keys, the screen comes out with
    capture-pane. The pane stays after the program ends, and shows its exit status."""

    def __init__(self, socket: str, argv: Sequence[str], width: int = 80, height: int = 24):
        self.socket = socket
        self._tmux("new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height),
                   f'{shlex.join(argv)}; echo "{EXITED} $?"')
        self._tmux("set-option", "-t", "top", "remain-on-exit", "on")

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-u", "-L", self.socket, "-f", "/dev/null", *args],
            check=True, capture_output=True, text=True,
            env={**os.environ, "LANG": "C.UTF-8", "TERM": "xterm-256color"},
        ).stdout

    def send(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "top", *keys)

    def screen(self, colours: bool = False) -> list[str]:
        extra = ("-e",) if colours else ()
        return self._tmux("capture-pane", "-p", *extra, "-t", "top").split("\n")[:-1]

    def exit_status(self) -> int | None:
        """None while the program runs."""
        said = [line for line in self.screen() if line.startswith(EXITED)]
        return int(said[0].split()[-1]) if said else None

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def terminal(run_id: str) -> Iterator:
    """Open terminals with ``terminal(argv)``; all are closed after the test."""
    opened: list[Terminal] = []

    def open_terminal(argv: Sequence[str], **size: int) -> Terminal:
        opened.append(Terminal(f"statspout-top-{run_id}-{len(opened)}", argv, **size))
        return opened[-1]

    yield open_terminal
    for term in opened:
        term.close()
