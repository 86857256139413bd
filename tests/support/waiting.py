"""Waiting for a condition with a deadline, instead of sleeping and hoping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, poll: float = 0.1) -> T:
    """Call ``condition`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def passes_within(check: Callable[[], T], timeout: float, poll: float = 0.2) -> T:
    """Run ``check`` (assertions) until it passes; at the deadline its last failure is raised.

    For comparing a sample with a raw figure read a moment later, when the figure itself moves
    (page cache that the kernel reclaims under memory pressure): a later sample and a fresh
    read are compared again, rather than accepting a wider tolerance."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(poll)
