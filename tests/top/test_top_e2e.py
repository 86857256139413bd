"""statspout-top against the real pipeline (collector, router) and real containers, in a real
terminal (tmux, 80×24): sorting and filtering by keys, the stopped mark, ``q``, and ``--once``."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from support.processes import Pipeline, Process, program
from support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

SPIN = "while :; do :; done"


def is_header(line: str) -> bool:
    return "NAME" in line and "PIDS" in line


def table_names(screen: list[str], run_id: str) -> list[str]:
    """Container names in screen order (the table's rows)."""
    header = next((i for i, line in enumerate(screen) if is_header(line)), None)
    if header is None:  # not drawn yet
        return []
    return [word for line in screen[header + 1:] for word in line.split() if run_id in word]


def row_of(screen: list[str], name: str) -> str:
    return next(line for line in screen if name in line.split())


def test_live_view_sorts_filters_marks_stopped_and_silent_fits_80x24_and_quits(
    make_container, endpoints, run_id, terminal, tmp_path
):
    busy, idle, stopping = (f"busy-{run_id}", f"idle-{run_id}", f"stop-{run_id}")
    make_container(SPIN, name=busy)
    make_container("sleep 3600", name=idle)
    doomed = make_container("sleep 3600", name=stopping)
    log_file = tmp_path / "top.log"
    with Pipeline(endpoints, run_id, interval=1.0, host="top-e2e") as pipeline:
        term = terminal([program("statspout-top"), "--connect", endpoints[1], "--interval", "1",
                         "--log-file", str(log_file), "--log-level", "info"])

        # Sorted by CPU by default: the busy container first once its CPU figure is in.
        wait_for(lambda: table_names(term.screen(), run_id)[:1] == [busy]
                 and len(table_names(term.screen(), run_id)) == 3, 30,
                 "the busy container first of three")
        screen = term.screen()
        assert len(screen) == 24 and max(len(line) for line in screen) <= 80
        header = next(line for line in screen if is_header(line))
        # With the state columns, 80 columns leave out the memory limit and BLOCK I/O first.
        for column in ("HOST", "NAME", "CPU %", "MEM USAGE", "MEM %", "NET I/O", "PIDS",
                       "STATUS"):
            assert column in header, column
        assert " Up " in row_of(screen, idle)  # its STATUS, from its state messages
        assert "q:quit" in screen[-1] and "HOST top-e2e  3 ctr" in screen[1]
        assert "sort CPU % ↓" in screen[0]

        # n: by name A→Z; n again: Z→A.
        term.send("n")
        wait_for(lambda: table_names(term.screen(), run_id) == [busy, idle, stopping], 5,
                 "sorted by name")
        term.send("n")
        wait_for(lambda: table_names(term.screen(), run_id) == [stopping, idle, busy], 5,
                 "sorted by name, Z→A")

        # / opens the filter: the router's selector syntax.
        term.send("/")
        wait_for(lambda: "selectors:" in term.screen()[-1], 5, "the filter box")
        term.send("-l", "name=idle-*")
        term.send("Enter")
        wait_for(lambda: table_names(term.screen(), run_id) == [idle], 5, "only idle shown")
        assert "filter name=idle-*" in term.screen()[0]
        term.send("/")
        wait_for(lambda: "name=idle-*" in term.screen()[-1], 5, "the filter box")
        term.send("C-u", "Enter")  # an empty filter shows all again
        wait_for(lambda: len(table_names(term.screen(), run_id)) == 3, 5, "all shown again")

        # A stopped container is kept and marked.
        doomed.stop(timeout=0)
        wait_for(lambda: row_of(term.screen(), stopping).startswith("x"), 15,
                 "the stopped container marked x")
        assert "HOST top-e2e  3 ctr (1 !)" in term.screen()[1]
        term.send("c")  # back to CPU order
        wait_for(lambda: table_names(term.screen(), run_id)[0] == busy, 5, "sorted by CPU")
        # The screenshot of the docs (docs/top.png) is this screen: saved as a test artifact,
        # into STATSPOUT_SCREENSHOTS when set.
        term.save_screenshot(Path(os.environ.get("STATSPOUT_SCREENSHOTS", tmp_path)))

        # The collector dies: no stop events, the samples just stop. Within a few intervals
        # every row is marked ! and the host line says SILENT.
        pipeline.collector.stop()
        wait_for(lambda: row_of(term.screen(), busy).startswith("!")
                 and row_of(term.screen(), idle).startswith("!"), 15,
                 "the running containers marked ! once their samples stopped")
        assert "SILENT" in term.screen()[1]

        term.send("q")
        wait_for(lambda: term.exit_status() is not None, 10, "statspout-top to quit")
        assert term.exit_status() == 0
    assert "malformed=0" in log_file.read_text() and "gaps=0" in log_file.read_text()


def docker_stats(name: str, template: str) -> str:
    """What the Docker CLI's own ``docker stats`` prints for one container."""
    return subprocess.run(["docker", "stats", "--no-stream", "--format", template, name],
                          check=True, capture_output=True, text=True, timeout=30).stdout.strip()


def test_once_prints_a_text_and_a_json_snapshot(make_container, endpoints, run_id):
    busy, idle = f"busy-{run_id}", f"idle-{run_id}"
    make_container(SPIN, name=busy)
    make_container("sleep 3600", name=idle)
    with Pipeline(endpoints, run_id, interval=1.0, host="once-host") as pipeline:
        wait_for(lambda: len([s for s in pipeline.samples(busy) if s["cpu_percent"]]) >= 2, 30,
                 "CPU figures of the busy container")
        once = [program("statspout-top"), "--connect", endpoints[1], "--once", "--wait", "2.5"]
        text_run = Process(once)
        json_run = Process([*once, "--json"])
        assert text_run.popen.wait(30) == 0 and json_run.popen.wait(30) == 0
        text_run.stop()
        json_run.stop()

    lines = text_run.stdout
    assert lines[0].startswith("HOST once-host  2 ctr  CPU ")
    header = next(line for line in lines if is_header(line))
    rows = lines[lines.index(header) + 1:]
    assert [next(w for w in r.split() if run_id in w) for r in rows] == [busy, idle]
    cpu_end = header.index("CPU %") + len("CPU %")
    busy_cpu = float(rows[0][:cpu_end].split()[-1].rstrip("%"))
    idle_cpu = float(rows[1][:cpu_end].split()[-1].rstrip("%"))
    assert busy_cpu > max(idle_cpu, 5)  # a core when the machine is idle; tests load it
    mem_cell = rows[0][cpu_end:header.index("MEM %")].strip()
    assert " / " in mem_cell and mem_cell.endswith("iB")
    # As docker stats writes it: the limit (which does not move) reads the same; the usage
    # moves between the two reads, so only its form is compared.
    idle_usage, idle_limit = rows[1][cpu_end:header.index("MEM %")].strip().split(" / ")
    docker_usage, docker_limit = docker_stats(idle, "{{.MemUsage}}").split(" / ")
    assert idle_limit == docker_limit
    assert re.fullmatch(r"\d+(\.\d+)?(B|KiB|MiB|GiB)", idle_usage)
    assert re.fullmatch(r"\d+(\.\d+)?(B|KiB|MiB|GiB)", docker_usage)

    snapshot = json.loads("\n".join(json_run.stdout))
    containers = {c["name"]: c for c in snapshot["containers"]}
    assert set(containers) == {busy, idle}
    assert containers[busy]["cpu_percent"] > max(containers[idle]["cpu_percent"], 5)
    assert containers[busy]["state"] == "running"
    assert containers[idle]["labels"]["statspout.test"] == run_id
    assert isinstance(containers[idle]["mem_usage_bytes"], int)
    assert [h["host"] for h in snapshot["hosts"]] == ["once-host"]
    assert snapshot["hosts"][0]["containers"] == 2
