"""The router's end of the bus for sink tests, and a sink run by the real worker behind it."""

from __future__ import annotations

import threading
import time

import zmq

from statspout import bus, wire
from statspout.sinks.base import Sink
from statspout.sinks.runtime import SinkWorker
from support.samples import make_event


class RouterFeed:
    """Plays the router's output: sends the three-frame messages a sink subscribes to.

    An XPUB (the router's is a PUB) so that a test can see the subscription arrive instead of
    losing its first messages to the slow-joiner gap, and with XPUB_NODROP so that it blocks
    rather than drops when the sink is behind: a test must not lose messages.
    """

    def __init__(self, route: str = bus.DEFAULT_ROUTE) -> None:
        self.topic = bus.topic_for(route)
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.XPUB)
        self.socket.setsockopt(zmq.XPUB_NODROP, 1)
        self.socket.bind("tcp://127.0.0.1:*")
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.sequence = 0  # the router's number of the last message sent
        self.events_sent = 0

    def wait_for_subscriber(self) -> None:
        """Wait for the sink's subscription to our route; messages sent after it are not lost.
        20 s: a ``statspout-sink`` process has to start and import its client library first."""
        assert self.socket.poll(20_000), "the sink never subscribed"
        assert self.socket.recv() == b"\x01" + self.topic

    def send(self, message: wire.Message) -> None:
        """Send one message as the router forwards it, numbered in sequence."""
        self.sequence += 1
        self.events_sent += isinstance(message, wire.ContainerEvent)
        self.send_frames(self.topic, bus.pack_sequence(self.sequence), wire.encode(message))

    def send_frames(self, *frames: bytes) -> None:
        """Send frames as given, unnumbered: for malformed messages, other routes, gaps."""
        self.socket.send_multipart(list(frames))

    def close(self) -> None:
        self.socket.close(0)
        self.context.term()


class SinkWorkerThread:
    """A sink run by the real SinkWorker in a thread, subscribed to a RouterFeed of its own.

    The sink is opened once the subscription has arrived, and closed after the worker stops.
    """

    def __init__(self, sink: Sink, *, report_interval: float = 3600.0) -> None:
        self.sink = sink
        self.feed = RouterFeed()
        self.context = zmq.Context()
        self.socket = bus.sink_subscriber(self.context, self.feed.endpoint)
        self.feed.wait_for_subscriber()
        sink.open()
        self.worker = SinkWorker(sink, self.socket, report_interval=report_interval)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=self.worker.run, args=(self.stop_event,), daemon=True)
        self.thread.start()
        # Forgetting a container nobody knows: a harmless event that marks a point in the stream.
        self._marker = make_event("destroy", id="marker", name="marker")

    def send(self, message: wire.Message) -> None:
        self.feed.send(message)

    def deliver(self, message: wire.Message) -> None:
        """Send, and wait until the sink has taken it and everything sent before. The worker
        handles messages in order from one thread, and nothing is lost (XPUB_NODROP), so once
        it has counted every event sent, including a marker after ``message``, that is so."""
        self.send(message)
        self.send(self._marker)
        deadline = time.monotonic() + 10
        while self.worker.counts.events < self.feed.events_sent:
            assert time.monotonic() < deadline, "the worker did not take the message in 10 s"
            time.sleep(0.02)
        assert (self.worker.counts.sink_errors, self.worker.counts.gaps) == (0, 0)

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
        self.sink.close()
        self.socket.close(0)
        self.context.term()
        self.feed.close()
