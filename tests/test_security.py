"""CURVE: key files, and a real router that lets in only authorized collectors and sinks."""

from __future__ import annotations

import json
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import zmq
from support.netns import PUBLISH_ENV, publish_argv
from support.ports import free_port
from support.processes import Process, program
from support.waiting import wait_for

from statspout import bus, security
from statspout.sinks.resume import ReplayClient


def keygen(folder: Path, *names: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([program("statspout-keygen"), "--dir", str(folder), *names],
                          capture_output=True, text=True, timeout=30, check=check)


def test_keygen_writes_pairs_with_a_private_secret(tmp_path: Path) -> None:
    result = keygen(tmp_path / "keys", "router", "c1")
    assert result.stdout.split() == [str(tmp_path / "keys" / f) for f in (
        "router.key", "router.key_secret", "c1.key", "c1.key_secret")]
    secret = tmp_path / "keys" / "c1.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    pair = security.load_key_pair(secret)
    assert security.load_public_key(tmp_path / "keys" / "c1.key") == pair.public
    assert security.load_authorized_keys(tmp_path / "keys") == {
        pair.public, security.load_public_key(tmp_path / "keys" / "router.key")}


def test_keygen_never_overwrites_without_force(tmp_path: Path) -> None:
    keygen(tmp_path, "router")
    before = (tmp_path / "router.key").read_text()
    again = keygen(tmp_path, "router", check=False)
    assert again.returncode == 2 and "exists" in again.stderr and again.stderr.count("\n") == 1
    keygen(tmp_path, "--force", "router")
    assert (tmp_path / "router.key").read_text() != before


def test_bad_key_files_are_named(tmp_path: Path) -> None:
    keygen(tmp_path, "a")
    with pytest.raises(security.BadKey, match="holds no secret key"):
        security.load_key_pair(tmp_path / "a.key")
    (tmp_path / "junk.key").write_text("hello\n")
    with pytest.raises(security.BadKey, match=r"junk\.key"):
        security.load_authorized_keys(tmp_path)
    with pytest.raises(security.BadKey, match="does not exist"):
        security.load_authorized_keys(tmp_path / "nowhere")


def test_sink_needs_both_curve_options(tmp_path: Path) -> None:
    result = subprocess.run([program("statspout-sink"), "stdout", "--curve-secret-key", "x"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "go together" in result.stderr


def test_router_refuses_a_curve_key_without_secret(tmp_path: Path) -> None:
    keygen(tmp_path, "router")
    result = subprocess.run(
        [program("statspout-router"), "--curve-secret-key", str(tmp_path / "router.key"),
         "--authorized-keys", str(tmp_path), "--control", f"ipc://{tmp_path}/c.ctl"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "holds no secret key" in result.stderr


class Subscriber:
    def __init__(self, context: zmq.Context, endpoint: str, keys: security.ClientKeys | None):
        self.socket = bus.sink_subscriber(context, endpoint, security=keys)
        self.messages: list[dict] = []

    def drain(self) -> list[dict]:
        while self.socket.poll(20):
            self.messages.append(msgpack.unpackb(self.socket.recv_multipart()[2]))
        return self.messages

    def hosts(self) -> set[str]:
        return {m["host"] for m in self.drain()}


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def test_only_authorized_keys_get_in_and_a_removed_key_is_cut_off_on_reload(
    tmp_path: Path, context: zmq.Context
) -> None:
    keys, authorized = tmp_path / "keys", tmp_path / "authorized"
    keygen(keys, "router", "c1", "c2", "c3", "s1", "s2", "s3")
    authorized.mkdir()
    for name in ("c1", "c3", "s1", "s3"):  # c2 and s2 are strangers
        shutil.copy(keys / f"{name}.key", authorized)
    listen, publish = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    control = f"ipc://{tmp_path}/router.ctl"
    router = Process([program("statspout-router"), "--listen", listen, "--publish", publish,
                      "--control", control, "--curve-secret-key", str(keys / "router.key_secret"),
                      "--authorized-keys", str(authorized)])
    wait_for(lambda: "CURVE on" in router.log(), 15, "the router to start with CURVE")
    server_key = str(keys / "router.key")

    def client(name: str) -> dict[str, str]:
        return {"curve_secret_key": str(keys / f"{name}.key_secret"),
                "curve_server_key": server_key}

    def own_keys(name: str) -> security.ClientKeys:
        return security.ClientKeys(security.load_key_pair(keys / f"{name}.key_secret"),
                                   security.load_public_key(server_key))

    collectors = [Process(publish_argv(listen, name, interval="0.1", **client(name)),
                          env=PUBLISH_ENV) for name in ("c1", "c2", "c3")]
    sink_s1 = Process([program("statspout-sink"), "stdout", "--stdout.format", "json",
                       "--connect", publish, "--curve-secret-key", client("s1")["curve_secret_key"],
                       "--curve-server-key", server_key])
    s3, stranger, plain = (Subscriber(context, publish, k)
                           for k in (own_keys("s3"), own_keys("s2"), None))
    try:
        # Known collectors reach known sinks; the unknown collector never does.
        wait_for(lambda: s3.hosts() == {"c1", "c3"} and len(s3.messages) > 40, 20,
                 "samples of c1 and c3 at the authorized sink s3")
        wait_for(lambda: {m["host"] for m in sink_s1.json_lines()} == {"c1", "c3"}, 20,
                 "samples of c1 and c3 at the sink process s1")
        # An unknown sink, and one without CURVE, received nothing in all that time.
        assert stranger.drain() == [] and plain.drain() == []
        assert "c2" not in s3.hosts() | {m["host"] for m in sink_s1.json_lines()}

        # Remove c1 (a collector) and s1 (a sink) from the folder and reload.
        (authorized / "c1.key").unlink()
        (authorized / "s1.key").unlink()
        router.popen.send_signal(signal.SIGHUP)
        wait_for(lambda: "2 removed" in router.log(), 10, "the reload of the keys")
        status = wait_for(lambda: (s := _status(control))["rejected"] > 0 and s, 10,
                          "messages of the removed collector being dropped")
        assert status["hosts"]["c3"]["messages"] > 0 and "c2" not in status["hosts"]
        # The line about it names the key's file and the address it came from.
        wait_for(lambda: "dropped a message from c1.key, peer 127.0.0.1" in router.log(), 10,
                 "the line naming the revoked collector")
        s3.drain()
        s3.messages.clear()
        # s3 reconnected after the output was bound anew; c3 goes on, c1 is gone.
        wait_for(lambda: sum(m["host"] == "c3" for m in s3.drain()) >= 20, 20,
                 "c3's samples after the reload")
        assert "c1" not in s3.hosts()
        first_c3_after = min(m["seq"] for m in s3.messages if m["host"] == "c3")
        last_c3_at_s1 = max(m["seq"] for m in sink_s1.json_lines() if m["host"] == "c3")
        assert last_c3_at_s1 < first_c3_after, "the removed sink s1 got data after the reload"
        assert stranger.drain() == [] and plain.drain() == []
    finally:
        for process in (*collectors, sink_s1, router):
            process.stop()
        for sub in (s3, stranger, plain):
            sub.socket.close()
    assert router.popen.returncode == 0
    # The stranger collector never found a subscriber: the handshake itself was refused.
    assert "sent=0 " in collectors[1].stdout[-1]


def _status(control: str) -> dict:
    context = zmq.Context()
    try:
        return json.loads(bus.control_request(context, control, b"status"))
    finally:
        context.term()


def test_the_replay_socket_answers_only_authorized_sinks(
    tmp_path: Path, context: zmq.Context
) -> None:
    keys, authorized = tmp_path / "keys", tmp_path / "authorized"
    keygen(keys, "router", "s1", "s2")
    authorized.mkdir()
    shutil.copy(keys / "s1.key", authorized)  # s2 is a stranger
    publish, replay = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    router = Process([program("statspout-router"), "--listen", f"tcp://127.0.0.1:{free_port()}",
                      "--publish", publish, "--replay", replay,
                      "--control", f"ipc://{tmp_path}/router.ctl",
                      "--curve-secret-key", str(keys / "router.key_secret"),
                      "--authorized-keys", str(authorized)])
    try:
        wait_for(lambda: "CURVE on" in router.log(), 15, "the router to start with CURVE")
        server_key = security.load_public_key(keys / "router.key")

        def client(name: str | None) -> ReplayClient:
            own = None if name is None else security.ClientKeys(
                security.load_key_pair(keys / f"{name}.key_secret"), server_key)
            return ReplayClient(lambda: bus.replay_client(context, replay, own), timeout_ms=1000)

        answers = {name: client(name).fetch("all", 1) for name in ("s1", "s2", None)}
        assert answers["s1"] is not None and answers["s1"].messages == []
        assert answers["s2"] is None and answers[None] is None
    finally:
        router.stop()
