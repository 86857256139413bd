"""Error lines about bad input, at most one a second: a flood of malformed messages or failing
samples must not flood the log. The counters beside each call carry the full number."""

from __future__ import annotations

import logging
import re
import time


class ThrottledErrors:
    def __init__(self, logger: logging.Logger, every_s: float = 1.0) -> None:
        self._logger = logger
        self._every_s = every_s
        self._last = float("-inf")

    def error(self, fmt: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last >= self._every_s:
            self._last = now
            self._logger.error(fmt, *args)


# ``scheme://user:password@host``: the password part of a URL's userinfo.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*):(?P<password>[^\s/]*)@")


def mask_secrets(text: str) -> str:
    """The text with every URL password replaced by ``***`` (``http://user:***@host``), for
    anything that is logged or shown and may contain a URL the operator gave."""
    return _URL_PASSWORD.sub(r"\g<head>:***@", text)
