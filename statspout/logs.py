"""Error lines about bad input, at most one a second: a flood of malformed messages or failing
samples must not flood the log. The counters beside each call carry the full number."""

from __future__ import annotations

import logging
import time


class ThrottledErrors:
    def __init__(self, logger: logging.Logger, every_s: float = 1.0) -> None:
        self._logger = logger
        self._every_s = every_s
        self._last = float("-inf")

    def error(self, fmt: str, *args: object) -> None:
        self.log(logging.ERROR, fmt, *args)

    def log(self, level: int, fmt: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last >= self._every_s:
            self._last = now
            self._logger.log(level, fmt, *args)
