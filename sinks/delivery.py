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
- A permanent failure (a 4xx retrying cannot fix) gives the batch up: counted in
  ``failed_batches`` and ``rejected``, logged once per kind of error rather than per batch.
- ``close`` keeps writing until the buffer is empty or ``close-timeout`` passed; what is left
  is counted in ``unflushed`` and logged.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Generic, TypeVar

from statspout import cli
from statspout.sinks.base import Option, Sink
from statspout.wire import ContainerStats

Item = TypeVar("Item")

# The first retry waits about this long; every further failure doubles it up to max-backoff.
INITIAL_BACKOFF_S = 0.5


@dataclass(frozen=True)
class Failure:
    """What a sink's classifier says about an exception from ``write_batch``."""

    retryable: bool
    reason: str
    retry_after: float | None = None  # seconds, from the server (HTTP 429/503 Retry-After)
    # Permanent failures are logged once per key: e.g. "HTTP 401" rather than the full reason,
    # whose details (sizes, field names) may differ from batch to batch.
    key: str | None = None


Classifier = Callable[[Exception], Failure]


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
    written: int = 0
    dropped: int = 0  # oldest samples pushed out of a full buffer
    retries: int = 0  # failed write attempts that were retried
    failed_batches: int = 0  # batches given up on a permanent error
    rejected: int = 0  # samples in those batches
    buffered: int = 0  # waiting or being written, at the time of asking
    unflushed: int = 0  # left in the buffer when close gave up


def backoff_delay(
    attempt: int, failure: Failure, max_backoff: float, rng: random.Random
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry).

    The server's Retry-After wins. Otherwise exponential with "equal jitter" (half fixed, half
    random): many sinks restarted together by one outage do not retry in lockstep, and the
    wait still grows steadily.
    """
    if failure.retry_after is not None:
        return max(0.0, failure.retry_after)
    ceiling = min(max_backoff, INITIAL_BACKOFF_S * 2 ** (attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


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
        with self._changed:
            first = not self._waiting
            if first:
                self._first_waiting_at = time.monotonic()
            self._waiting.append(item)
            self._counts.received += 1
            if len(self._waiting) > self._settings.buffer_size:
                self._waiting.popleft()
                self._counts.dropped += 1
            # Wake the writer when its deadline starts (first sample) or a batch is full.
            if first or len(self._waiting) >= self._settings.batch_size:
                self._changed.notify()

    def unsettled(self) -> int:
        """Samples put but not yet settled: neither confirmed by the database nor given up nor
        dropped. Samples settle in the order they were put, so everything put before the last
        ``unsettled()`` ones is done with: the confirmed watermark of a replay checkpoint."""
        with self._changed:
            return len(self._waiting) + self._in_flight

    def counters(self) -> Mapping[str, int]:
        with self._changed:
            self._counts.buffered = len(self._waiting) + self._in_flight
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
            left = len(self._waiting) + self._in_flight
            self._counts.unflushed = left
        if left:
            self._log.error(
                "%s: closed with %d samples not written (close timeout %.1f s)",
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
            try:
                self._write_batch(batch)
            except Exception as exc:  # the classifier decides what any exception means
                failure = self._safe_classify(exc)
                if failure.retryable:
                    attempt += 1
                    self._requeue(batch, failure, attempt)
                    self._pause(backoff_delay(attempt, failure, self._settings.max_backoff,
                                              self._rng))
                else:
                    self._give_up(batch, failure)
                continue
            if attempt:
                self._log.warning("%s: database reachable again after %d retries",
                                  self._name, attempt)
                attempt = 0
            with self._changed:
                self._counts.written += len(batch)
                self._in_flight = 0

    def _next_batch(self) -> list[Item] | None:
        """Wait until a batch is due, take it out of the waiting line; None when closed."""
        settings = self._settings
        with self._changed:
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
                self._name, waiting, failure.reason,
            )
        else:
            self._log.debug("%s: retry %d failed: %s", self._name, attempt, failure.reason)

    def _give_up(self, batch: list[Item], failure: Failure) -> None:
        with self._changed:
            self._in_flight = 0
            self._counts.failed_batches += 1
            self._counts.rejected += len(batch)
            failed = self._counts.failed_batches
        key = failure.key or failure.reason
        if key not in self._reasons_logged:
            self._reasons_logged.add(key)
            self._log.error(
                "%s: the database rejected a batch of %d samples and retrying cannot help "
                "(logged once; see failed_batches in the report): %s",
                self._name, len(batch), failure.reason,
            )
        else:
            self._log.debug("%s: rejected batch %d: %s", self._name, failed, failure.reason)

    def _pause(self, seconds: float) -> None:
        """Sleep between retries; cut short by close, never past its deadline."""
        with self._changed:
            end = time.monotonic() + seconds
            while True:
                limit = end
                if self._closing:
                    limit = min(end, self._close_deadline)
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    return
                self._changed.wait(remaining)

    def _past_deadline(self) -> bool:
        return time.monotonic() >= self._close_deadline

    def _safe_classify(self, exc: Exception) -> Failure:
        try:
            return self._classify(exc)
        except Exception as bug:  # a classifier bug must not kill the writer
            return Failure(False, f"{exc!r} (classifier failed: {bug!r})")



class DeliveringSink(Sink):
    """A database sink: every sample goes through a Delivery to ``write_batch``.

    A subclass declares ``delivery_options()`` among its options, passes its classifier, opens
    its client in ``open`` before calling ``super().open()``, and closes it in ``close`` after
    ``super().close()`` has written out the buffer.
    """

    def __init__(self, settings: SimpleNamespace, classify: Classifier) -> None:
        super().__init__(settings)
        self._delivery: Delivery[ContainerStats] = Delivery(
            self.write_batch, classify, DeliverySettings.from_settings(settings), name=self.name
        )

    def write_batch(self, batch: list[ContainerStats]) -> None:
        """Write the batch; return only once the database confirmed all of it, else raise."""
        raise NotImplementedError

    def open(self) -> None:
        self._delivery.start()

    def write(self, sample: ContainerStats) -> None:
        self._delivery.put(sample)

    def close(self) -> None:
        self._delivery.close()

    def unsettled(self) -> int:
        return self._delivery.unsettled()

    def counters(self) -> Mapping[str, int]:
        return self._delivery.counters()
