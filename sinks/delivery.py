"""Delivery to a database: a bounded buffer and one writer thread that batches, retries and flushes.

The database sinks share this machinery; a sink supplies only ``write_batch(list)`` (which
returns once the database confirmed the whole batch, or raises) and ``classify(exception)``
(retry it, or give the batch up). Semantics, which the sinks' docs repeat:

- ``put`` never blocks the worker. The buffer holds at most ``buffer-size`` samples waiting to
  be written, plus the one batch whose write call is in progress. When it is full the OLDEST
  waiting sample is dropped and counted in ``dropped``.
- A batch is written when ``batch-size`` samples wait, or when the oldest has waited
  ``flush-interval`` seconds. Batches go out in arrival order, one at a time.
- A sample leaves the buffer only when ``write_batch`` returned: the database confirmed it. On
  a retryable failure (refused, timeout, 5xx, 429) the batch goes back to the front of the
  buffer and is tried again after an exponential backoff with jitter, or after the server's
  ``Retry-After``. Writes must be idempotent, because a timed-out write may have landed.
- A bad sample costs only itself. A permanent failure (a 4xx retrying cannot fix) that the
  classifier blames on the data (``split``) is not taken as the batch's verdict: the batch is
  split in halves, recursively, and the parts written, until only the bad samples are left;
  those are given up, counted in ``rejected`` (and the writes in ``failed_batches``). A
  permanent failure not about the data (bad credentials, no such database) gives the whole
  batch up without splitting: every part would fail alike. ``split_batches`` counts splits.
- A partial write: ``write_batch`` may raise :class:`PartialWrite` when the database stored
  the batch except for some rejected entries (InfluxDB's ``partial write … dropped=N``; MongoDB
  write errors of an unordered insert). The batch counts as written; what was rejected is
  counted in ``rejected`` (whole samples) or ``rejected_points`` (InfluxDB points, four to a
  sample), and nothing is retried or split.
- Every distinct reason for giving samples up is logged once (digits and quoted text set aside,
  so one reason with different values is one reason; at most ``MAX_REASONS_LOGGED``), with URL
  passwords masked; the counters carry the numbers.
- ``close`` keeps writing until the buffer is empty, ``close-timeout`` passed, or a write fails
  for a reason that needs a retry (the database is down or overloaded: at shutdown one more
  attempt is made at once, without backoff, and its failure ends the writing rather than wait
  out the timeout). What is left is counted in ``unflushed`` and logged.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Generic, TypeVar, cast

from statspout import backoff, cli
from statspout.logs import mask_secrets
from statspout.sinks.base import Option, Sink
from statspout.wire import ContainerStats, Message

Item = TypeVar("Item")

# The first retry waits about this long; every further failure doubles it up to max-backoff.
INITIAL_BACKOFF_S = 0.5
# Distinct reasons for giving samples up that are logged (each once); beyond, only counted.
MAX_REASONS_LOGGED = 64


@dataclass(frozen=True)
class Failure:
    """What a sink's classifier says about an exception from ``write_batch``."""

    retryable: bool
    reason: str
    retry_after: float | None = None  # seconds, from the server (HTTP 429/503 Retry-After)
    # A permanent failure the data may cause (one bad sample): split the batch to find it.
    # False for failures every part would meet alike (credentials, a missing database).
    split: bool = False


Classifier = Callable[[Exception], Failure]


class PartialWrite(Exception):
    """Raised by ``write_batch`` when the database stored the batch except for some entries.

    ``rejected_samples`` counts whole samples refused (a MongoDB document); ``rejected_points``
    counts parts of samples refused (InfluxDB points), the samples themselves being written.
    """

    def __init__(self, reason: str, *, rejected_samples: int = 0, rejected_points: int = 0
                 ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rejected_samples = rejected_samples
        self.rejected_points = rejected_points


def reason_key(reason: str) -> str:
    """What makes two reasons the same for the log-once rule: the text without its numbers
    and single-quoted excerpts (the offending line, sizes, ids differ from sample to sample)."""
    return re.sub(r"\d+", "#", re.sub(r"'[^']*'", "'…'", reason))[:300]


@dataclass(frozen=True)
class DeliverySettings:
    buffer_size: int = 100_000
    batch_size: int = 1_000
    flush_interval: float = 1.0
    close_timeout: float = 10.0
    max_backoff: float = 30.0

    @classmethod
    def from_settings(cls, settings: SimpleNamespace) -> DeliverySettings:
        """Read the options of :func:`delivery_options` from a sink's settings."""
        return cls(
            buffer_size=settings.buffer_size,
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval,
            close_timeout=settings.close_timeout,
            max_backoff=settings.max_backoff,
        )


def delivery_options(batch_size: int = DeliverySettings.batch_size) -> tuple[Option, ...]:
    """The options every sink that delivers through this module declares."""
    defaults = DeliverySettings(batch_size=batch_size)
    return (
        Option("buffer-size", "samples held while the database is slow or down; when full "
               "the oldest are dropped", default=defaults.buffer_size, type=cli.positive_int),
        Option("batch-size", "samples per write", default=defaults.batch_size,
               type=cli.positive_int),
        Option("flush-interval", "seconds a sample waits at most for its batch to fill",
               default=defaults.flush_interval, type=cli.seconds(0.01)),
        Option("close-timeout", "seconds to keep writing the buffer at shutdown",
               default=defaults.close_timeout, type=cli.seconds(0)),
        Option("max-backoff", "longest pause in seconds between retries while the database "
               "is unreachable", default=defaults.max_backoff, type=cli.seconds(0.1)),
    )


@dataclass
class DeliveryCounts:
    received: int = 0
    written: int = 0  # samples in writes the database confirmed (some points may be rejected)
    dropped: int = 0  # oldest samples pushed out of a full buffer
    retries: int = 0  # failed write attempts that were retried
    failed_batches: int = 0  # writes given up on a permanent error (after splitting)
    rejected: int = 0  # samples given up: in those writes, or refused in a partial write
    rejected_points: int = 0  # points refused in a partial write whose samples were written
    split_batches: int = 0  # batches split in halves to isolate rejected samples
    buffered: int = 0  # waiting or being written, at the time of asking
    unflushed: int = 0  # left in the buffer when close gave up


def backoff_delay(
    attempt: int, failure: Failure, max_backoff: float, rng: random.Random
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry): the server's
    Retry-After when it gave one, else the shared backoff (statspout/backoff.py)."""
    if failure.retry_after is not None:
        return max(0.0, failure.retry_after)
    return backoff.backoff_delay(attempt, first_s=INITIAL_BACKOFF_S, max_s=max_backoff, rng=rng)


class Delivery(Generic[Item]):
    """A bounded buffer drained by one writer thread into ``write_batch``."""

    def __init__(
        self,
        write_batch: Callable[[list[Item]], None],
        classify: Classifier,
        settings: DeliverySettings,
        *,
        name: str,
        log: logging.Logger | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._write_batch = write_batch
        self._classify = classify
        self._settings = settings
        self._name = name
        self._log = log or logging.getLogger(f"statspout.sink.{name}")
        self._rng = rng or random.Random()
        self._waiting: deque[Item] = deque()
        self._in_flight = 0
        # Parts of a split batch still to write, the next one last; only the writer changes it.
        self._suspects: list[list[Item]] = []
        self._suspect_count = 0
        self._first_waiting_at = 0.0  # monotonic time the oldest waiting sample arrived
        self._changed = threading.Condition()
        self._closing = False
        self._close_deadline = 0.0
        self._reasons_logged: set[str] = set()
        self._counts = DeliveryCounts()
        self._thread = threading.Thread(target=self._run, name=f"{name}-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, item: Item) -> None:
        """Queue one sample; never blocks on the database."""
        self.put_many((item,))

    def put_many(self, items: Sequence[Item]) -> None:
        """Queue samples in order, under one lock; the same as putting them one by one (what
        overflows the buffer drops the oldest, counted one by one)."""
        if not items:
            return
        with self._changed:
            first = not self._waiting
            if first:
                self._first_waiting_at = time.monotonic()
            self._waiting.extend(items)
            self._counts.received += len(items)
            for _ in range(len(self._waiting) - self._settings.buffer_size):
                self._waiting.popleft()
                self._counts.dropped += 1
            # Wake the writer when its deadline starts (first sample) or a batch is full.
            if first or len(self._waiting) >= self._settings.batch_size:
                self._changed.notify()

    def unsettled(self) -> int:
        """Samples put but not yet settled: neither confirmed by the database nor given up nor
        dropped. Samples settle in the order they were put, so everything put before the last
        ``unsettled()`` ones is done with: the confirmed watermark of a replay checkpoint.
        (A split batch keeps that order: its first half is written before its second.)"""
        with self._changed:
            return self._held()

    def counters(self) -> Mapping[str, int]:
        with self._changed:
            self._counts.buffered = self._held()
            return asdict(self._counts)

    def close(self, timeout: float | None = None) -> int:
        """Write what is buffered for at most ``timeout`` seconds (default: close-timeout);
        return how many samples were left unwritten."""
        timeout = self._settings.close_timeout if timeout is None else timeout
        with self._changed:
            self._closing = True
            self._close_deadline = time.monotonic() + timeout
            self._changed.notify()
        if self._thread.is_alive():
            # A write call in progress is bounded by the sink's own request timeout; wait for
            # it a little past the deadline rather than abandon a batch the server may confirm.
            self._thread.join(timeout + 5.0)
        with self._changed:
            left = self._held()
            self._counts.unflushed = left
        if left:
            self._log.error(
                "%s: closed with %d samples not written (counted in unflushed; close timeout "
                "%.1f s)",
                self._name, left, timeout,
            )
        return left

    # The writer thread.

    def _run(self) -> None:
        attempt = 0
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            rejected_samples = 0
            try:
                self._write_batch(batch)
            except PartialWrite as partial:
                rejected_samples = min(len(batch), max(0, partial.rejected_samples))
                refused = (f"{partial.rejected_points} points" if partial.rejected_points
                           else f"{rejected_samples} samples")
                self._log_reason(partial.reason, "the database refused %s of a batch of %d "
                                 "samples and stored the rest", refused, len(batch))
                with self._changed:
                    self._counts.rejected += rejected_samples
                    self._counts.rejected_points += max(0, partial.rejected_points)
            except Exception as exc:  # the classifier decides what any exception means
                failure = self._safe_classify(exc)
                if failure.retryable:
                    attempt += 1
                    self._requeue(batch, failure, attempt)
                    with self._changed:
                        closing = self._closing
                    if closing and attempt > 1:
                        self._log.warning("%s: database still failing at shutdown; not "
                                          "waiting for it", self._name)
                        return
                    self._pause(backoff_delay(attempt, failure, self._settings.max_backoff,
                                              self._rng))
                elif failure.split and len(batch) > 1:
                    self._split(batch)
                else:
                    self._give_up(batch, failure)
                continue
            if attempt:
                self._log.warning("%s: database reachable again after %d retries",
                                  self._name, attempt)
                attempt = 0
            with self._changed:
                self._counts.written += len(batch) - rejected_samples
                self._in_flight = 0

    def _next_batch(self) -> list[Item] | None:
        """Wait until a batch is due, take it out of the waiting line; None when closed."""
        settings = self._settings
        with self._changed:
            if self._suspects:  # finish a split batch before anything newer
                if self._closing and self._past_deadline():
                    return None
                batch = self._suspects.pop()
                self._suspect_count -= len(batch)
                self._in_flight = len(batch)
                return batch
            while True:
                if self._closing and (not self._waiting or self._past_deadline()):
                    return None
                if self._waiting:
                    due_in = self._first_waiting_at + settings.flush_interval - time.monotonic()
                    if self._closing or len(self._waiting) >= settings.batch_size or due_in <= 0:
                        break
                else:
                    due_in = None
                self._changed.wait(due_in)
            size = min(settings.batch_size, len(self._waiting))
            batch = [self._waiting.popleft() for _ in range(size)]
            self._in_flight = size
            return batch

    def _requeue(self, batch: list[Item], failure: Failure, attempt: int) -> None:
        """Put a failed batch back at the front: it is older than anything waiting."""
        with self._changed:
            self._in_flight = 0
            self._counts.retries += 1
            # The batch waited long enough already: due as soon as the pause ends.
            self._first_waiting_at = 0.0
            self._waiting.extendleft(reversed(batch))
            while len(self._waiting) > self._settings.buffer_size:
                self._waiting.popleft()
                self._counts.dropped += 1
            waiting = len(self._waiting)
        if attempt == 1:
            # Once per outage; the counters and the recovery line tell the rest.
            self._log.warning(
                "%s: write failed, buffering (%d waiting) and retrying with backoff: %s",
                self._name, waiting, mask_secrets(failure.reason),
            )
        else:
            self._log.debug("%s: retry %d failed: %s", self._name, attempt,
                            mask_secrets(failure.reason))

    def _split(self, batch: list[Item]) -> None:
        """Write the halves next (the first half first), each split again if it fails."""
        middle = len(batch) // 2
        with self._changed:
            self._in_flight = 0
            self._counts.split_batches += 1
            self._suspects.extend((batch[middle:], batch[:middle]))
            self._suspect_count += len(batch)

    def _give_up(self, batch: list[Item], failure: Failure) -> None:
        with self._changed:
            self._in_flight = 0
            self._counts.failed_batches += 1
            self._counts.rejected += len(batch)
        self._log_reason(failure.reason, "the database rejected %d samples and retrying "
                         "cannot help", len(batch))

    def _log_reason(self, reason: str, what: str, *args: object) -> None:
        """Log each distinct reason once (see :func:`reason_key`); the rest at debug level."""
        reason = mask_secrets(reason)
        key = reason_key(reason)
        if key in self._reasons_logged or len(self._reasons_logged) > MAX_REASONS_LOGGED:
            self._log.debug("%s: " + what + ": %s", self._name, *args, reason)
            return
        self._reasons_logged.add(key)
        if len(self._reasons_logged) > MAX_REASONS_LOGGED:
            self._log.error("%s: more than %d distinct reasons for rejected samples; further "
                            "ones are only counted (rejected, rejected_points)",
                            self._name, MAX_REASONS_LOGGED)
            return
        self._log.error("%s: " + what + " (each reason logged once; see rejected in the "
                        "report): %s", self._name, *args, reason)

    def _pause(self, seconds: float) -> None:
        """Sleep between retries; ended by close, which makes one more attempt at once."""
        with self._changed:
            end = time.monotonic() + seconds
            while True:
                if self._closing:
                    return
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return
                self._changed.wait(remaining)

    def _held(self) -> int:
        """Samples not yet written nor given up: waiting, in flight, in a split's parts."""
        return len(self._waiting) + self._in_flight + self._suspect_count

    def _past_deadline(self) -> bool:
        return time.monotonic() >= self._close_deadline

    def _safe_classify(self, exc: Exception) -> Failure:
        try:
            return self._classify(exc)
        except Exception as bug:  # a classifier bug must not kill the writer
            return Failure(False, f"{exc!r} (classifier failed: {bug!r})")



class DeliveringSink(Sink, Generic[Item]):
    """A database sink: every sample goes through a Delivery to ``write_batch``.

    A subclass declares ``delivery_options()`` among its options, passes its classifier, opens
    its client in ``open`` before calling ``super().open()``, and closes it in ``close`` after
    ``super().close()`` has written out the buffer. ``Item`` is what it buffers: samples, and
    the state and engine messages a subclass hands to ``deliver`` from its ``handle_state`` /
    ``handle_engine`` (they share the buffer, its order, its batches and its checkpoints).
    """

    # What a subclass overriding handle_state/handle_engine puts into the delivery; the runtime
    # counts only the kinds the sink handles at all (sinks/runtime.py).
    buffered_kinds = frozenset({"stats", "state", "engine"})

    def __init__(self, settings: SimpleNamespace, classify: Classifier) -> None:
        super().__init__(settings)
        self._delivery: Delivery[Item] = Delivery(
            self.write_batch, classify, DeliverySettings.from_settings(settings), name=self.name
        )
        # While handle_batch runs: what deliver() was given, put into the buffer at its end.
        self._collected: list[Item] | None = None

    def write_batch(self, batch: list[Item]) -> None:
        """Write the batch; return only once the database confirmed all of it, else raise."""
        raise NotImplementedError

    def open(self) -> None:
        self._delivery.start()

    def write(self, sample: ContainerStats) -> None:
        self.deliver(cast(Item, sample))

    def deliver(self, item: Item) -> None:
        """Buffer ``item`` for a later ``write_batch``."""
        if self._collected is not None:
            self._collected.append(item)
        else:
            self._delivery.put(item)

    def handle_batch(self, messages: Sequence[Message]) -> None:
        """The per-message methods, as the base class calls them, and what they deliver put
        into the buffer at once: one lock, one wake-up of the writer per router message."""
        self._collected = []
        try:
            super().handle_batch(messages)
        finally:
            collected, self._collected = self._collected, None
            self._delivery.put_many(collected)

    def close(self) -> None:
        self._delivery.close()

    def unsettled(self) -> int:
        return self._delivery.unsettled()

    def counters(self) -> Mapping[str, int]:
        return self._delivery.counters()
