"""A first day with statspout (issue 12): every stumble a new operator met, as a real process
that now says what is wrong, and where."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from support.docker_engine import PrivateEngine
from support.ports import free_port
from support.processes import Pipeline, Process, program
from support.waiting import wait_for

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = ["statspout-collector", "statspout-router", "statspout-sink", "statspout-keygen"]


def run(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([program(argv[0]), *argv[1:]], capture_output=True, text=True,
                          env=env, timeout=30)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """A host's keys folder as docs/security.md lays it out, plus a key nobody authorized."""
    folder = tmp_path / "keys"
    run("statspout-keygen", "--dir", str(folder), "router", "collector", "sink", "stranger")
    (folder / "authorized").mkdir()
    for name in ("collector", "sink"):
        shutil.copy(folder / f"{name}.key", folder / "authorized")
    return folder


# Stumble 3: a collector the router refuses, or that reaches no router, says so.


@pytest.mark.docker
@pytest.mark.parametrize("client_keys", ["stranger", "none"])
def test_refused_collector_is_logged_on_both_sides(docker_client, keys, endpoints,
                                                   client_keys) -> None:
    listen, publish = endpoints
    router = Process([program("statspout-router"), "--listen", listen, "--publish", publish,
                      "--keys-dir", str(keys), "--control", f"ipc://{keys}/router.ctl"])
    key_options = ([] if client_keys == "none" else
                   ["--curve-secret-key", str(keys / f"{client_keys}.key_secret"),
                    "--curve-server-key", str(keys / "router.key")])
    collector = Process([program("statspout-collector"), "--connect", listen,
                         "--unlinked-warning", "1", *key_options])
    try:
        wait_for(lambda: "no router has subscribed at " + listen in collector.log(), 20,
                 "the collector's warning")
        assert "wrong address or CURVE key?" in collector.log()
        assert f"the router at {listen} refused the link" in collector.log()
        if client_keys == "stranger":
            wait_for(lambda: "refused a CURVE handshake from 127.0.0.1" in router.log(), 10,
                     "the router's ZAP line naming the peer")
            assert f"not in {keys / 'authorized'}" in router.log()
        else:
            # Whichever end notices first: the mechanism mismatch, or the peer hanging up.
            wait_for(lambda: f"a peer failed the handshake on --listen {listen}" in router.log(),
                     10, "the router's line about a peer without CURVE")
    finally:
        collector.stop()
        router.stop()
    # Throttled: the collector reconnects many times a second, the logs hold a few lines.
    assert len([line for line in router.stderr if "handshake" in line]) <= 3
    assert len([line for line in collector.stderr if "no router has subscribed" in line]) == 1


def test_refused_sink_is_logged_on_both_sides(keys, endpoints) -> None:
    # The sibling of the collector's case: a sink worker with a key the router does not know.
    listen, publish = endpoints
    router = Process([program("statspout-router"), "--listen", listen, "--publish", publish,
                      "--keys-dir", str(keys), "--control", f"ipc://{keys}/router.ctl"])
    sink = Process([program("statspout-sink"), "stdout", "--connect", publish,
                    "--unlinked-warning", "1", "--keys-dir", str(keys),
                    "--curve-secret-key", str(keys / "stranger.key_secret")])
    try:
        wait_for(lambda: f"no router has taken the link at {publish}" in sink.log(), 20,
                 "the sink's warning")
        wait_for(lambda: "refused a CURVE handshake from 127.0.0.1" in router.log(), 10,
                 "the router's ZAP line")
        assert f"the router at {publish} refused the link" in sink.log()
    finally:
        sink.stop()
        router.stop()


@pytest.mark.docker
def test_collector_pointed_at_no_router_warns_once(docker_client) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"  # a mistyped address: nobody listens there
    collector = Process([program("statspout-collector"), "--connect", endpoint,
                         "--unlinked-warning", "1"])
    try:
        wait_for(lambda: f"no router has subscribed at {endpoint} for 1 s" in collector.log(),
                 20, "the warning")
    finally:
        collector.stop()


# Stumble 5: CURVE for a whole host in one setting.


@pytest.mark.docker
def test_one_keys_folder_turns_curve_on_for_every_program(keys, endpoints, run_id,
                                                          make_container, monkeypatch) -> None:
    monkeypatch.setenv("STATSPOUT_KEYS_DIR", str(keys))
    container = make_container("sleep 3600")
    with Pipeline(endpoints, run_id) as pipeline:
        wait_for(lambda: pipeline.samples(container.name), 30, "a sample through CURVE")
        assert "CURVE on" in pipeline.router.log()
        assert "refused" not in pipeline.router.log() + pipeline.collector.log()


def test_gitignore_keeps_keys_and_local_sink_files_out_of_the_checkout() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "keys/router.key_secret", "conf.d/influxdb.conf",
         "conf.d/influxdb.conf.example"],
        cwd=REPO, capture_output=True, text=True,
    ).stdout.split()
    assert ignored == ["keys/router.key_secret", "conf.d/influxdb.conf"]


def test_supervisord_conf_turns_curve_on_in_one_line() -> None:
    text = (REPO / "supervisord.conf").read_text()
    assert re.search(r"^;\s*environment\s*=\s*STATSPOUT_KEYS_DIR=", text, re.MULTILINE)


# Stumble 6: the commands the docs give work, and an empty sink is explained.


def test_docs_give_supervisorctl_as_it_is_installed() -> None:
    for page in (REPO / "README.md", REPO / "docs" / "operations.md", REPO / "docs" / "setup.md"):
        for line in page.read_text().splitlines():
            for command in re.findall(r"`([^`]*supervisorctl[^`]*)`", line):
                assert command.startswith(".venv/bin/supervisorctl"), f"{page.name}: {command}"


def test_supervisord_keeps_a_stderr_log_for_every_program() -> None:
    # `supervisorctl tail -f collector stderr` needs stderr_logfile, and no redirect_stderr.
    sections = re.split(r"^\[", (REPO / "supervisord.conf").read_text(), flags=re.MULTILINE)
    programs = [s for s in sections if s.startswith("program:")]
    assert programs
    for section in programs:
        assert "stderr_logfile" in section and "redirect_stderr = true" not in section, section


@pytest.mark.docker
def test_collector_says_why_nothing_is_sampled_on_an_empty_host(docker_client) -> None:
    folder = Path(tempfile.mkdtemp(prefix="statspout-dockerd-"))  # socket path < 108 bytes
    engine = PrivateEngine(folder)
    engine.start()
    try:
        collector = Process([program("statspout-collector"), "--connect",
                             f"tcp://127.0.0.1:{free_port()}"],
                            env={"DOCKER_HOST": engine.env["DOCKER_HOST"]})
        try:
            wait_for(lambda: "0 running containers: nothing to sample" in collector.log(), 20,
                     "the line about an empty host")
        finally:
            collector.stop()
    finally:
        engine.stop()
        shutil.rmtree(folder, ignore_errors=True)


# Stumble 7: errors that say what and where.


@pytest.mark.parametrize("name", ["statspout-collector", "statspout-sink"])
def test_missing_key_file_is_named_with_its_option(name) -> None:
    argv = [name, *(["stdout"] if name == "statspout-sink" else []),
            "--curve-secret-key", "keys/nope.key_secret", "--curve-server-key", "keys/r.key"]
    result = run(*argv)
    assert result.returncode == 2
    assert result.stderr == f"{name}: error: --curve-secret-key keys/nope.key_secret: " \
                            "no such file\n"


def test_router_missing_key_file_is_named_with_its_option(tmp_path) -> None:
    result = run("statspout-router", "--curve-secret-key", "keys/nope.key_secret",
                 "--authorized-keys", str(tmp_path), "--control", f"ipc://{tmp_path}/r.ctl")
    assert result.returncode == 2
    assert result.stderr.endswith(": --curve-secret-key keys/nope.key_secret: no such file\n")


def test_missing_docker_socket_is_named_with_the_reason() -> None:
    collector = Process([program("statspout-collector"), "--connect",
                         f"tcp://127.0.0.1:{free_port()}"],
                        env={"DOCKER_HOST": "unix:///nope.sock"})
    try:
        wait_for(lambda: len([line for line in collector.stderr if "trying again" in line]) >= 2,
                 15, "two attempts")
    finally:
        collector.stop()
    assert "no such file: /nope.sock — is dockerd running?" in collector.stderr[0]
    assert "unix:///nope.sock" in collector.stderr[0]
    assert "in 0 s" not in collector.log()


# Stumble 8: help texts.


@pytest.mark.parametrize("name", PROGRAMS)
def test_every_program_has_a_version(name) -> None:
    result = run(name, "--version")
    assert result.returncode == 0 and re.fullmatch(rf"{name} \d+\.\d+\S*\n", result.stdout)


HELPS = [["statspout-collector"], ["statspout-router"], ["statspout-sink"],
         ["statspout-sink", "influxdb"], ["statspout-sink", "rest"], ["statspout-keygen"]]


@pytest.mark.parametrize("argv", HELPS, ids=" ".join)
def test_help_reads_cleanly(argv) -> None:
    result = run(*argv, "--help", env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"})
    assert result.returncode == 0
    text = result.stdout
    assert "default )" not in text
    assert "docs/" not in text  # an installed wheel has no docs folder
    metavars = set(re.findall(r"--[\w.-]+ ([A-Z][\w.:-]*)", text))
    assert all(re.fullmatch(r"[A-Z]+(:[A-Z]+)?", m) for m in metavars), metavars
    assert max(len(line) for line in text.splitlines()) <= 100
    for switch in ("STATUS", "JSON", "SINK_SINK", "VERSION", "HELP"):
        assert f"_{switch} " not in text and f"_{switch})" not in text


def test_sink_help_says_how_to_list_a_sinks_options() -> None:
    assert "`statspout-sink NAME --help` lists" in run("statspout-sink", "--help").stdout


def test_bad_environment_value_does_not_hide_the_help() -> None:
    result = run("statspout-collector", "--help",
                 env={"PATH": "/usr/bin:/bin", "STATSPOUT_COLLECTOR_INTERVAL": "abc"})
    assert result.returncode == 0 and "--interval SECONDS" in result.stdout


def test_exported_status_does_not_turn_a_router_into_a_client(tmp_path) -> None:
    router = Process([program("statspout-router"), "--listen", f"tcp://127.0.0.1:{free_port()}",
                      "--publish", f"tcp://127.0.0.1:{free_port()}",
                      "--control", f"ipc://{tmp_path}/r.ctl"],
                     env={"STATSPOUT_ROUTER_STATUS": "1"})
    try:
        wait_for(lambda: "routing from" in router.log() or router.popen.poll() is not None, 15,
                 "the router to start")
        assert router.popen.poll() is None, router.log()
    finally:
        router.stop()
