"""The bus framing of restarts (the run id in the topic frame) and the replay protocol."""

from __future__ import annotations

import pytest

from statspout import bus
from statspout.replay import BadReplay, ReplayAnswer, ReplayRequest


def test_the_run_id_rides_after_the_subscription_prefix():
    topic = bus.routed_topic("prod", 2**64 - 1)
    assert topic.startswith(bus.topic_for("prod"))  # a sink of bus version 0 still matches
    assert bus.run_of(topic) == 2**64 - 1
    assert bus.route_of(topic) == "prod"


def test_a_topic_of_bus_version_0_has_no_run():
    assert bus.run_of(bus.topic_for("all")) is None
    assert bus.run_of(bus.topic_for("all") + b"\x02" + bytes(8)) is None  # unknown version


def test_the_replay_endpoint_is_the_port_after_the_output():
    assert bus.replay_endpoint_for("tcp://127.0.0.1:5557") == "tcp://127.0.0.1:5558"
    assert bus.replay_endpoint_for("tcp://[::1]:6000") == "tcp://[::1]:6001"
    assert bus.replay_endpoint_for("ipc:///run/out") == "ipc:///run/out.replay"
    with pytest.raises(ValueError):
        bus.replay_endpoint_for("tcp://127.0.0.1:65535")


def test_requests_and_answers_round_trip():
    request = ReplayRequest("all", 42, 7)
    assert ReplayRequest.decode([request.encode()]) == request
    answer = ReplayAnswer(5, 40, 50, [(42, b"a"), (43, b"b")])
    assert ReplayAnswer.decode(answer.encode()) == answer


@pytest.mark.parametrize("frames", [
    [], [b"\xc1"], ReplayAnswer(1, 1, 2, [(2, b"x"), (1, b"y")]).encode(),
    ReplayAnswer(1, 1, 2, [(1, b"x")]).encode()[:2],
])
def test_a_bad_answer_is_refused(frames):
    with pytest.raises(BadReplay):
        ReplayAnswer.decode(frames)
