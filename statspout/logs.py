"""Log lines about bad input or a degraded path, at most one per interval: a flood of malformed
messages or failing samples must not flood the log. The counters beside each call carry the full
number."""

from __future__ import annotations

import logging
import re
import time


class ThrottledErrors:
    """One logger's lines through one throttle: a line is written when ``every_s`` has passed
    since the last one written, and dropped otherwise."""

    def __init__(self, logger: logging.Logger, every_s: float = 1.0) -> None:
        self._logger = logger
        self._every_s = every_s
        self._last = float("-inf")

    def error(self, fmt: str, *args: object) -> None:
        self.log(logging.ERROR, fmt, *args)

    def warning(self, fmt: str, *args: object) -> None:
        self.log(logging.WARNING, fmt, *args)

    def log(self, level: int, fmt: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last >= self._every_s:
            self._last = now
            self._logger.log(level, fmt, *args)


# ``scheme://user:password@host``: the password part of a URL's userinfo.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*):(?P<password>[^\s/]*)@")


def mask_secrets(text: str) -> str:
    """The text with every URL password replaced by ``***`` (``http://user:***@host``), for
    anything that is logged or shown and may contain a URL the operator gave."""
    return _URL_PASSWORD.sub(r"\g<head>:***@", text)
