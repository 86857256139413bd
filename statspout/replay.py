"""The replay protocol between a sink and the router's replay socket (version 1).

A sink that missed messages of its route (it was down, its queue at the router overflowed, the
router restarted) asks the router for them by the route's sequence number; the router answers
from its bounded replay buffer. One request, one answer (REQ/REP), one page at a time:

    request: one frame, msgpack {"v": 1, "op": "replay", "route": NAME, "from": SEQ,
             "limit": MESSAGES}
    answer:  frame 1, msgpack {"v": 1, "run": RUN_ID, "oldest": SEQ or null, "head": SEQ,
             "error": TEXT (only when the request was refused)}
             then two frames per message: its sequence number (8 bytes, big endian) and the
             payload as the collector sent it, in ascending order, starting at the first held
             sequence number >= "from".

``oldest`` is the first sequence number the router still holds for the route (null when it holds
none), ``head`` the last one it sent on the route. Messages between ``from`` and ``oldest`` are
beyond the replay window: the sink counts them as lost. ``run`` is the router's run id (the one
in every routed topic frame, ``bus.routed_topic``): another run than the sink's means the
router restarted and its numbers started again at 1.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import msgpack

from statspout import bus

PROTOCOL_VERSION = 1
# What one answer carries at most, whatever the request's limit: pages keep the router's loop
# and both sockets' memory bounded.
PAGE_MESSAGES = 1000
PAGE_BYTES = 4 * 1024 * 1024


class BadReplay(ValueError):
    """A replay request or answer that does not follow this protocol."""


@dataclass(frozen=True)
class ReplayRequest:
    route: str
    first: int  # the first sequence number wanted
    limit: int = PAGE_MESSAGES

    def encode(self) -> bytes:
        return msgpack.packb({"v": PROTOCOL_VERSION, "op": "replay", "route": self.route,
                              "from": self.first, "limit": self.limit})

    @classmethod
    def decode(cls, frames: list[bytes]) -> ReplayRequest:
        if len(frames) != 1:
            raise BadReplay(f"{len(frames)} frames, expected 1")
        try:
            raw = msgpack.unpackb(frames[0], raw=False)
        except Exception as exc:  # msgpack raises several unrelated types for bad input
            raise BadReplay(f"not msgpack: {exc}") from None
        if not isinstance(raw, dict) or raw.get("op") != "replay":
            raise BadReplay("not a replay request")
        if raw.get("v") != PROTOCOL_VERSION:
            raise BadReplay(f"protocol version {raw.get('v')!r}, expected {PROTOCOL_VERSION}")
        route, first, limit = raw.get("route"), raw.get("from"), raw.get("limit")
        if not isinstance(route, str) or len(route) > 200:
            raise BadReplay("route must be a string of at most 200 characters")
        for name, value in (("from", first), ("limit", limit)):
            if type(value) is not int or not 0 <= value < 2**63:
                raise BadReplay(f"{name} must be an integer in [0, 2^63)")
        assert isinstance(first, int) and isinstance(limit, int)  # checked just above
        return cls(route, first, limit)


@dataclass(frozen=True)
class ReplayAnswer:
    run: int
    oldest: int | None
    head: int
    messages: list[tuple[int, bytes]]
    error: str | None = None

    def encode(self) -> list[bytes]:
        header: dict[str, object] = {"v": PROTOCOL_VERSION, "run": self.run,
                                     "oldest": self.oldest, "head": self.head}
        if self.error is not None:
            header["error"] = self.error
        frames = [msgpack.packb(header)]
        for sequence, payload in self.messages:
            frames.append(bus.pack_sequence(sequence))
            frames.append(payload)
        return frames

    @classmethod
    def decode(cls, frames: list[bytes]) -> ReplayAnswer:
        if not frames or len(frames) % 2 != 1:
            raise BadReplay(f"{len(frames)} frames, expected a header and pairs")
        try:
            header = msgpack.unpackb(frames[0], raw=False)
        except Exception as exc:  # msgpack raises several unrelated types for bad input
            raise BadReplay(f"header is not msgpack: {exc}") from None
        if not isinstance(header, dict) or header.get("v") != PROTOCOL_VERSION:
            raise BadReplay("header is not a replay answer of version 1")
        run, oldest, head = header.get("run"), header.get("oldest"), header.get("head")
        if type(run) is not int or type(head) is not int or not (
                oldest is None or type(oldest) is int):
            raise BadReplay("header lacks run, head or oldest")
        error = header.get("error")
        messages = []
        for index in range(1, len(frames), 2):
            messages.append((bus.unpack_sequence(frames[index]), frames[index + 1]))
        if any(b[0] <= a[0] for a, b in itertools.pairwise(messages)):
            raise BadReplay("messages are not in ascending order")
        return cls(run, oldest, head, messages, error if isinstance(error, str) else None)
