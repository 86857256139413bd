"""The collector messages a sink worker handed on lately, to drop a collector's resend.

A collector sends its last seconds again to a router it links to anew (bus.CollectorPublisher,
docs/reliability.md): what the router it lost had already delivered then arrives a second time,
under the new router run's own numbers, so the route's sequence cannot tell. The collector's
identity of a message can: (host, seq, timestamp). The timestamp keeps a restarted collector,
which numbers from 1 again, from being taken for a repeat; a resend is the same bytes, so a
hash of the payload joins the key and two different messages under one identity (a forged or
hand-made one) are both kept. Looked for only behind a router of bus version 1 (run ids in
its topics), whose restarts are what makes collectors resend.
"""

from __future__ import annotations

from collections import OrderedDict

from statspout import wire

# Keys remembered, the oldest forgotten first: over ten minutes of 150 samples/s, far more than
# a collector resends (bus.RESEND_MAX_MESSAGES); about 20 MB at most.
RECENT_MESSAGES_REMEMBERED = 100_000

MessageKey = tuple[str, int, int, int]


def message_key(message: wire.Message, payload: bytes) -> MessageKey:
    """A collector's message as it is the same when resent: its identity and its bytes."""
    return (message.host, message.seq, message.timestamp, hash(payload))


class RecentMessages:
    """A bounded set of the latest message keys; ``repeats`` counts those seen again."""

    def __init__(self, limit: int = RECENT_MESSAGES_REMEMBERED) -> None:
        self._limit = limit
        self._keys: OrderedDict[MessageKey, None] = OrderedDict()
        self.repeats = 0

    def is_repeat(self, key: MessageKey) -> bool:
        """True (and counted) when ``key`` was seen lately; otherwise it is remembered."""
        if key in self._keys:
            self._keys.move_to_end(key)
            self.repeats += 1
            return True
        self._keys[key] = None
        if len(self._keys) > self._limit:
            self._keys.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._keys)
