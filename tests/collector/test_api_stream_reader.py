"""One container's stats stream (collector/api_streams.py ContainerStream) against a small HTTP
server on 127.0.0.1 that streams recorded Docker payloads as the daemon does (chunked, one
object a line), in the order and at the moments a test says: each payload is handed out once,
the ones nobody took are counted, a bad line is counted and skipped, a zero payload ends the
stream, a dropped connection is opened again, and close() ends the thread at once."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest
from support.waiting import wait_for

from statspout.collector.api_streams import ContainerStream, StreamCounts
from statspout.collector.figures import parse_docker_time
from statspout.logs import ThrottledErrors

RECORDED = json.loads((Path(__file__).parent / "payloads" / "cgroup_v1_api_1.41.json")
                      .read_text())
CONTAINER_ID = "c" * 64
END, DROP = "end", "drop"


def payload(second: int) -> dict[str, Any]:
    return {**RECORDED, "read": f"2026-11-28T22:08:{second:02d}.000000001Z"}


class StatsServer:
    """Streams what the test puts in ``script``: a dict (one payload line), bytes (sent as
    they are), END (the stream ends properly) or DROP (the connection is cut)."""

    def __init__(self) -> None:
        self.script: queue.Queue[dict | bytes | str] = queue.Queue()
        self.connections = 0
        self.stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                while not server.stopping.is_set():
                    try:
                        item = server.script.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    if item == DROP:
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if item == END:
                        self.wfile.write(b"0\r\n\r\n")
                        return
                    data = item if isinstance(item, bytes) else json.dumps(item).encode() + b"\n"
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"tcp://127.0.0.1:{self.http.server_address[1]}"

    def close(self) -> None:
        self.stopping.set()
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def server() -> Iterator[StatsServer]:
    running = StatsServer()
    yield running
    running.close()


@pytest.fixture
def stream(server: StatsServer) -> Iterator[tuple[ContainerStream, StreamCounts]]:
    api = docker.APIClient(base_url=server.base_url, version="1.41", timeout=10)
    counts = StreamCounts()
    stream = ContainerStream(api, CONTAINER_ID, counts, threading.Lock(),
                             ThrottledErrors(logging.getLogger("test")))
    stream.start()
    yield stream, counts
    stream.close()
    stream.thread.join(5)
    api.close()


def test_each_payload_is_handed_out_once_and_the_unread_ones_are_counted(server, stream):
    follower, counts = stream
    server.script.put(payload(1))
    server.script.put(payload(2))
    wait_for(lambda: counts.payloads == 2, 5, "two payloads decoded")
    assert follower.take_newer(timeout=1, max_age=5)["read"] == payload(2)["read"]
    assert counts.superseded == 1  # the first was replaced before anyone took it
    assert follower.take_newer(timeout=0.2, max_age=5) is None  # nothing new: not twice
    server.script.put(payload(3))
    assert follower.take_newer(timeout=5, max_age=5)["read"] == payload(3)["read"]
    assert counts.malformed == 0 and counts.reconnects == 0


def test_a_payload_older_than_max_age_is_not_taken(server, stream):
    follower, counts = stream
    server.script.put(payload(1))
    wait_for(lambda: counts.payloads == 1, 5, "a payload decoded")
    assert follower.take_newer(timeout=0.1, max_age=0.0) is None
    assert follower.take_newer(timeout=0.1, max_age=5) is not None


def test_a_bad_line_is_counted_and_the_stream_goes_on(server, stream):
    follower, counts = stream
    server.script.put(b"{not json\n[1, 2]\n")
    server.script.put(payload(4))
    assert follower.take_newer(timeout=5, max_age=5)["read"] == payload(4)["read"]
    assert counts.malformed == 2


def test_a_zero_payload_ends_the_stream_and_its_thread(server, stream):
    follower, counts = stream
    server.script.put(payload(5))
    wait_for(lambda: counts.payloads == 1, 5, "a payload decoded")
    server.script.put({**RECORDED, "read": "0001-01-01T00:00:00Z"})
    follower.thread.join(5)
    assert not follower.thread.is_alive() and follower.ended.is_set()
    assert follower.take_newer(timeout=5, max_age=5) is None  # at once: it ended
    assert counts.ended == 1 and counts.superseded == 1  # the one left untaken


def test_a_dropped_connection_is_opened_again(server, stream):
    follower, counts = stream
    server.script.put(payload(6))
    assert follower.take_newer(timeout=5, max_age=5) is not None
    server.script.put(DROP)
    wait_for(lambda: counts.reconnects == 1 and server.connections == 2, 10,
             "the stream opened again after the drop")
    server.script.put(payload(7))
    assert follower.take_newer(timeout=5, max_age=5)["read"] == payload(7)["read"]
    assert follower.thread.is_alive()


def test_a_stream_the_daemon_ends_properly_is_over(server, stream):
    follower, counts = stream
    server.script.put(END)
    follower.thread.join(5)
    assert not follower.thread.is_alive() and counts.ended == 1 and server.connections == 1


def test_close_ends_a_thread_waiting_for_a_push_at_once(server, stream):
    follower, counts = stream
    server.script.put(payload(8))
    wait_for(lambda: counts.payloads == 1, 5, "a payload decoded")
    follower.close()  # the server sends nothing more: the thread is blocked reading
    follower.thread.join(2)
    assert not follower.thread.is_alive()
    assert counts.reconnects == 0


def test_a_reading_taken_by_one_shot_is_not_handed_out_again_by_the_stream(server, stream):
    """Docker 20.10 answers a one-shot read with the reading of the same tick its streams get:
    after a one-shot fallback, the stream's copy of that reading is not a new sample."""
    follower, counts = stream
    follower.read_elsewhere(parse_docker_time(payload(9)["read"]))
    server.script.put(payload(9))
    wait_for(lambda: counts.payloads == 1, 5, "the same reading through the stream")
    assert follower.take_newer(timeout=0.3, max_age=5) is None
    server.script.put(payload(10))
    assert follower.take_newer(timeout=5, max_age=5)["read"] == payload(10)["read"]


def test_a_payload_without_a_read_time_is_malformed(server, stream):
    follower, counts = stream
    server.script.put({**RECORDED, "read": "yesterday"})
    server.script.put(payload(11))
    assert follower.take_newer(timeout=5, max_age=5)["read"] == payload(11)["read"]
    assert counts.malformed == 1
