"""Failed links, said where the operator looks: ZeroMQ's socket monitor reports each handshake
a peer failed (wrong or missing CURVE key) and each link made or lost; a thread of its own
reads those reports, so that no program's main loop has to.

The router watches its bound sockets and logs refused peers (ZAP names their address, see
security.py; the monitor catches a peer without CURVE, which never reaches ZAP). The collector
watches its link to the router and logs a refusal at once and a router that has not taken the
link for a while ("no router has subscribed …"), once per episode.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

from statspout import cli
from statspout.logs import ThrottledErrors

# A refusal repeats at every reconnection (ten a second or more): one line per this many seconds.
LOG_EVERY_S = 10.0
_POLL_MS = 200

_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_DISCONNECTED
)

_PROTOCOL_ERRORS: dict[int, str] = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        "one side uses CURVE and the other does not (--curve-* options, --keys-dir)",
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        "the CURVE keys do not match (is the router's public key the right one?)",
    zmq.PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE:
        "the CURVE keys do not match (is the router's public key the right one?)",
}


def failure_reason(event: int, value: int) -> str | None:
    """Why a monitor event is a failed handshake, in words; None when it is not one."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return f"the CURVE key is not in the router's authorized folder (ZAP status {value})"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return _PROTOCOL_ERRORS.get(value, f"ZeroMQ protocol error 0x{value:x}")
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return "the handshake failed without detail (often a CURVE key that does not match)"
    return None


@dataclass
class LinkState:
    """What the monitor of one socket saw: links up now, and handshakes failed so far."""

    links: int = 0
    failed: int = 0
    # Every link that ended, for whatever reason (the router's input_links_dropped).
    ended: int = 0
    down_since: float = 0.0
    warned: bool = False


class HandshakeWatch:
    """Reads the monitor of each given socket in a thread of its own until ``stop``.

    A failed handshake is logged as ``describe_failure(label, reason, count)`` (throttled per
    socket); a key refused by ZAP only with ``report_refused_keys`` (the router's ZAP handler
    logs those itself, with the peer's address). With ``silence_s``, a socket that has had no
    link for that long is logged as ``describe_silence(label, seconds)``, once per episode, and
    its next link as "linked again". ``on_linked`` and ``on_unlinked`` are called, in the
    watch thread, at each link made and lost (the collector's resend, bus.CollectorPublisher).
    """

    def __init__(
        self,
        sockets: dict[str, zmq.Socket],
        log: logging.Logger,
        describe_failure: Callable[[str, str, int], str],
        silence_s: float | None = None,
        describe_silence: Callable[[str, float], str] | None = None,
        report_refused_keys: bool = True,
        on_linked: Callable[[], None] | None = None,
        on_unlinked: Callable[[], None] | None = None,
    ) -> None:
        # Monitor sockets are made here, in the caller's thread, before the sockets are used;
        # from then on only the watch thread touches them.
        self._monitors = {label: sock.get_monitor_socket(_EVENTS)
                          for label, sock in sockets.items()}
        self._log = log
        self._describe_failure = describe_failure
        self._silence_s = silence_s
        self._describe_silence = describe_silence
        self._report_refused_keys = report_refused_keys
        self._on_linked = on_linked
        self._on_unlinked = on_unlinked
        self._throttles = {label: ThrottledErrors(log, LOG_EVERY_S) for label in sockets}
        now = time.monotonic()
        self.states = {label: LinkState(down_since=now) for label in sockets}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="handshake-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        for monitor in self._monitors.values():
            poller.register(monitor, zmq.POLLIN)
        labels = {monitor: label for label, monitor in self._monitors.items()}
        try:
            while not self._stop.is_set():
                for monitor, _ in poller.poll(_POLL_MS):
                    self._handle(labels[monitor], recv_monitor_message(monitor))
                self._check_silence()
        finally:
            for monitor in self._monitors.values():
                monitor.close(linger=0)

    def _handle(self, label: str, message: dict) -> None:
        event, value = message["event"], message["value"]
        state = self.states[label]
        reason = failure_reason(event, value)
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and not self._report_refused_keys:
            state.failed += 1
        elif reason is not None:
            state.failed += 1
            self._throttles[label].error("%s", self._describe_failure(label, reason,
                                                                       state.failed))
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            if state.warned:
                self._log.info("%s: linked again", label)
            state.links += 1
            state.warned = False
            if self._on_linked is not None:
                self._on_linked()
        elif event == zmq.EVENT_DISCONNECTED:
            state.ended += 1
            if self._on_unlinked is not None:
                self._on_unlinked()
            if state.links == 0:
                return
            state.links -= 1
            if state.links == 0:
                state.down_since = time.monotonic()

    def _check_silence(self) -> None:
        if self._silence_s is None or self._describe_silence is None:
            return
        now = time.monotonic()
        for label, state in self.states.items():
            if state.links == 0 and not state.warned and now - state.down_since >= self._silence_s:
                state.warned = True
                self._log.warning("%s", self._describe_silence(label, now - state.down_since))

    def stop(self) -> None:
        """End the thread; call it before closing the watched sockets."""
        self._stop.set()
        self._thread.join()


# The collector's and the sink workers' link to the router.

DEFAULT_UNLINKED_WARNING_S = 30.0


def add_unlinked_warning_option(parser: cli.OptionParser) -> None:
    parser.option("--unlinked-warning", help="warn once when no router has taken the link for "
                  "this long (a wrong --connect address or CURVE key)",
                  default=DEFAULT_UNLINKED_WARNING_S, type=cli.seconds(1))


def watch_router_link(
    sock: zmq.Socket, endpoint: str, log: logging.Logger, silence_s: float, silence_text: str,
    on_linked: Callable[[], None] | None = None, on_unlinked: Callable[[], None] | None = None,
) -> HandshakeWatch:
    """Log a refused handshake with the router at once, and ``silence_text`` (formatted with
    ``endpoint`` and ``seconds``) once per episode without a link for ``silence_s``; call
    ``on_linked``/``on_unlinked`` at each link made and lost."""
    return HandshakeWatch(
        {endpoint: sock}, log,
        describe_failure=lambda where, reason, count:
            f"the router at {where} refused the link: {reason} ({count} so far)",
        silence_s=silence_s,
        describe_silence=lambda where, seconds:
            silence_text.format(endpoint=where, seconds=seconds),
        on_linked=on_linked, on_unlinked=on_unlinked,
    )
