"""Command-line conventions: every option from a flag or the environment, one-line errors."""

from __future__ import annotations

import re
import subprocess

import pytest
from support.processes import program

from statspout import cli


def run(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["statspout-collector", "--interval", "0"], "below the minimum of 1 s"),
        (["statspout-collector", "--connect", "localhost:5556"], "is not a ZeroMQ endpoint"),
        (["statspout-collector", "--max-concurrency", "0"], "must be at least 1"),
        (["statspout-router", "--publish", "tcp://127.0.0.1:99999"], "out of range"),
        (["statspout-router", "--include", "colour=red"], "is not a selector"),
        (["statspout-sink", "nosuchsink"], "unknown sink 'nosuchsink'"),
        (["statspout-sink"], "name a sink"),
        (["statspout-sink", "--sink", "nosuchmodule:Thing"], "cannot import"),
        (["statspout-sink", "stdout", "--stdout.format", "xml"], "invalid choice"),
        (["statspout-sink", "mongodb", "--mongodb.ttl", "-5"], "must be at least 0"),
    ],
)
def test_bad_values_exit_2_with_one_line(argv, message):
    result = run(program(argv[0]), *argv[1:])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_bad_environment_value_exits_2_naming_the_variable():
    result = run(program("statspout-collector"), env={"STATSPOUT_COLLECTOR_INTERVAL": "soon"})
    assert result.returncode == 2
    assert result.stderr.startswith("statspout-collector: error: STATSPOUT_COLLECTOR_INTERVAL=")


@pytest.mark.parametrize("name", ["statspout-collector", "statspout-router", "statspout-sink"])
def test_help_names_every_option_and_its_variable(name):
    result = run(program(name), "--help")
    assert result.returncode == 0
    usage, _, details = result.stdout.partition("\n\n")
    options = set(re.findall(r"\[(--[\w.-]+)", usage))
    assert options
    # Each option's entry starts on a line of its own, indented by two spaces.
    entries = {entry.split()[0]: " ".join(entry.split())
               for entry in re.split(r"\n  (?=--)", details)[1:]}
    for option in options - WITHOUT_VARIABLE:
        assert "(env STATSPOUT_" in entries[option], entries[option]
    for option in options & WITHOUT_VARIABLE:
        assert "env STATSPOUT_" not in entries[option], entries[option]


# Switches that change what the program is: an exported variable must never do that.
WITHOUT_VARIABLE = {"--version", "--status", "--json", "--sink"}


def test_sink_options_are_prefixed_with_the_sink_name():
    result = run(program("statspout-sink"), "stdout", "--help")
    assert "--stdout.format" in result.stdout and "STATSPOUT_STDOUT_FORMAT" in result.stdout


def test_flag_beats_environment_beats_default(monkeypatch):
    monkeypatch.setenv("STATSPOUT_TEST_LEVEL", "7")
    parser = cli.OptionParser(prog="t", env_prefix="STATSPOUT_TEST_")
    parser.option("--level", help="h", default=1, type=int)
    parser.option("--tag", help="h", repeatable=True)
    assert parser.parse_args([]).level == 7
    assert parser.parse_args(["--level", "9"]).level == 9
    monkeypatch.setenv("STATSPOUT_TEST_TAG", "a, b")
    parser = cli.OptionParser(prog="t", env_prefix="STATSPOUT_TEST_")
    parser.option("--tag", help="h", repeatable=True)
    assert parser.parse_args([]).tag == ["a", "b"]
    assert parser.parse_args(["--tag", "c"]).tag == ["c"]


def test_env_name_of_a_sink_option():
    assert cli.env_name("--rest.address") == "STATSPOUT_REST_ADDRESS"
