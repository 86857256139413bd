"""statspout-top's command line: flags and variables, one-line errors with status 2."""

from __future__ import annotations

import pytest

from statspout.top import main as top_main


def run(capsys, argv):
    with pytest.raises(SystemExit) as stop:
        top_main.main(argv)
    return stop.value.code, capsys.readouterr().err


def test_a_bad_filter_exits_2_naming_it(capsys):
    code, err = run(capsys, ["--once", "--filter", "colour=red"])
    assert code == 2 and "--filter" in err and "colour=red" in err and err.count("\n") == 1


def test_options_read_the_environment(capsys, monkeypatch):
    monkeypatch.setenv("STATSPOUT_TOP_SORT", "bogus")
    code, err = run(capsys, ["--once"])
    assert code == 2 and "STATSPOUT_TOP_SORT='bogus'" in err


def test_json_needs_once(capsys):
    code, err = run(capsys, ["--json"])
    assert code == 2 and "--json goes with --once" in err


def test_curve_keys_go_together(capsys):
    code, err = run(capsys, ["--once", "--curve-secret-key", "x.key_secret"])
    assert code == 2 and "go together" in err


def test_once_without_a_router_exits_1_naming_the_endpoint(capsys):
    assert top_main.main(["--once", "--connect", "tcp://127.0.0.1:9", "--wait", "0.3"]) == 1
    assert "no message from the router at tcp://127.0.0.1:9" in capsys.readouterr().err
