"""A terminal for statspout-top: a tmux session of its own, 80×24, on a private socket."""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text


class Terminal:
    """statspout-top running in tmux; keys go in with send-keys, the screen comes out with
    capture-pane. The shell around the program writes its exit status to a file: tmux itself
    may be slow to notice that a pane's program ended when no client is attached."""

    def __init__(self, socket: str, argv: Sequence[str], status_file: Path, width: int = 80,
                 height: int = 24):
        self.socket = socket
        self.width = width
        self._status_file = status_file
        command = f"{shlex.join(argv)}; echo $? > {shlex.quote(str(status_file))}"
        self._tmux("new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height),
                   command)

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
        written = self._status_file.read_text() if self._status_file.exists() else ""
        return int(written) if written.endswith("\n") else None

    def save_screenshot(self, folder: Path, name: str = "top") -> Path:
        """The screen with its colours as ``name.svg`` (Rich draws it), and as ``name.png``
        when Chromium is installed (headless, from the SVG). Returns the newest file made."""
        text = Text("\n").join(Text.from_ansi(line) for line in self.screen(colours=True))
        console = Console(record=True, width=self.width, file=io.StringIO(),
                          force_terminal=True, color_system="truecolor")
        console.print(text, no_wrap=True, crop=True)
        svg = folder / f"{name}.svg"
        console.save_svg(str(svg), title="statspout-top")
        chromium = shutil.which("chromium")
        if chromium is None:
            return svg
        png = folder / f"{name}.png"
        width, height = _svg_size(svg.read_text())
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", f"--screenshot={png}",
                        f"--window-size={width},{height}", svg.as_uri()],
                       check=True, capture_output=True, timeout=60)
        return png

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        # tmux leaves its socket file behind.
        folder = Path(os.environ.get("TMUX_TMPDIR", "/tmp"), f"tmux-{os.getuid()}")
        (folder / self.socket).unlink(missing_ok=True)


@pytest.fixture
def terminal(run_id: str, tmp_path: Path) -> Iterator:
    """Open terminals with ``terminal(argv)``; all are closed after the test."""
    opened: list[Terminal] = []

    def open_terminal(argv: Sequence[str], **size: int) -> Terminal:
        name = f"statspout-top-{run_id}-{len(opened)}"
        opened.append(Terminal(name, argv, tmp_path / f"{name}.status", **size))
        return opened[-1]

    yield open_terminal
    for term in opened:
        term.close()


def _svg_size(svg: str) -> tuple[int, int]:
    match = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg)
    assert match, "Rich's SVG has a viewBox"
    return int(float(match[1])) + 1, int(float(match[2])) + 1
