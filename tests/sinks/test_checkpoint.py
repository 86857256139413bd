"""The sink's checkpoint file and the settled position it saves."""

from __future__ import annotations

import json

from statspout.sinks.checkpoint import CheckpointFile, Position, SettledMark


def test_a_saved_position_is_loaded_again(tmp_path):
    path = tmp_path / "state"
    CheckpointFile(path, "influxdb", "all").save(Position(2**64 - 1, 2**63 - 1))
    assert CheckpointFile(path, "influxdb", "all").load() == Position(2**64 - 1, 2**63 - 1)
    assert CheckpointFile(path, "influxdb", "other").load() is None  # per route
    assert CheckpointFile(path, "stdout", "all").load() is None  # per sink
    assert [p.name for p in path.iterdir()] == ["influxdb--all.json"]  # no temporary left


def test_a_file_that_cannot_be_read_is_ignored_with_one_error(tmp_path, caplog):
    checkpoint = CheckpointFile(tmp_path, "stdout", "all")
    for text in ("{", json.dumps({"v": 1, "run": "zz", "seq": 1}), json.dumps([1]),
                 json.dumps({"v": 2, "run": "01", "seq": 1}),
                 json.dumps({"v": 1, "run": "01", "seq": -1})):
        checkpoint.path.write_text(text)
        assert checkpoint.load() is None
    assert sum("ignoring the checkpoint" in r.message for r in caplog.records) == 5


def test_names_cannot_leave_the_folder(tmp_path):
    checkpoint = CheckpointFile(tmp_path, "../x", "a/b")
    assert checkpoint.path.parent == tmp_path


def test_the_settled_position_stops_before_the_oldest_unsettled_sample():
    mark = SettledMark()
    assert mark.settled(0) is None
    for seq in range(1, 6):
        mark.handed(Position(7, seq), is_sample=seq != 3)  # 3 is an event
    assert mark.settled(unsettled=2) == Position(7, 3)  # samples 4 and 5 still held
    assert mark.settled(unsettled=1) == Position(7, 4)
    assert mark.settled(unsettled=0) == Position(7, 5)
    mark.handed(Position(8, 1), is_sample=True)  # the router restarted
    assert mark.settled(unsettled=1) == Position(8, 0)
