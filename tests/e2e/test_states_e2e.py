"""Container states through every sink that stores or shows them: a real container with a
failing health check and one that crash-loops under ``--restart on-failure:2``, read by the real
collector, passed by a real router, and stored by the stdout sink (JSON and line), the MongoDB
sink (SecantusDB) and the REST sink; what each holds at the end must be what ``docker inspect``
says."""

from __future__ import annotations

import calendar
import itertools
import time
from urllib.parse import quote

import pymongo
import pytest
import requests
from support.mongo import running_mongo
from support.ports import free_port
from support.processes import Pipeline, Process, program
from support.waiting import passes_within, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

STATE_FIELDS = ("status", "health", "restart_count", "exit_code", "oom_killed", "started_at",
                "finished_at", "pid")


def docker_time_ns(text: str) -> int | None:
    """``2026-11-28T20:30:01.123456789Z`` → ns since the epoch; None for Docker's zero time."""
    if text.startswith("0001-01-01"):
        return None
    whole, _, fraction = text.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 10**9 + int((fraction or "0").ljust(9, "0")[:9])


def inspected(container) -> dict:
    """The state fields as docker inspect gives them (exit code: none while it runs)."""
    container.reload()
    state = container.attrs["State"]
    running = state["Status"] in ("running", "paused")
    return {
        "status": state["Status"],
        "health": (state.get("Health") or {}).get("Status"),
        "restart_count": container.attrs["RestartCount"],
        "exit_code": None if running else state["ExitCode"],
        "oom_killed": state["OOMKilled"],
        "started_at": docker_time_ns(state["StartedAt"]),
        "finished_at": docker_time_ns(state["FinishedAt"]),
        "pid": state["Pid"],
    }


def test_the_state_each_sink_stores_is_what_docker_inspect_says(make_container, endpoints,
                                                                   run_id):
    names = {"unhealthy": f"unhealthy-{run_id}", "restarting": f"restarting-{run_id}"}
    unhealthy = make_container("sleep 3600", name=names["unhealthy"], healthcheck={
        "test": ["CMD-SHELL", "exit 1"], "interval": 1_000_000_000, "retries": 2})
    restarting = make_container("sleep 2; exit 3", name=names["restarting"],
                                restart_policy={"Name": "on-failure", "MaximumRetryCount": 2})
    port = free_port()
    with running_mongo() as mongo, mongo.client() as client, \
            Pipeline(endpoints, run_id, interval=1.0) as pipeline:
        publish = endpoints[1]
        line_sink = Process([program("statspout-sink"), "stdout", "--connect", publish])
        mongo_sink = Process([program("statspout-sink"), "mongodb", "--connect", publish,
                              "--mongodb.uri", mongo.uri, "--mongodb.database", run_id,
                              "--mongodb.flush-interval", "0.1"])
        rest_sink = Process([program("statspout-sink"), "rest", "--connect", publish,
                             "--rest.address", f"127.0.0.1:{port}"])
        sinks = (line_sink, mongo_sink, rest_sink)
        try:
            # Docker's side: the health check failed twice; the restarts ran out (3 runs of 2 s).
            wait_for(lambda: inspected(unhealthy)["health"] == "unhealthy", 30, "unhealthy")
            wait_for(lambda: inspected(restarting)["status"] == "exited"
                     and inspected(restarting)["restart_count"] == 2, 40, "restarts used up")
            truth = {kind: inspected(c) for kind, c in
                     (("unhealthy", unhealthy), ("restarting", restarting))}
            assert truth["restarting"]["exit_code"] == 3

            def json_state(name: str) -> dict | None:
                found = [m for m in pipeline.sink.json_lines()
                         if m["kind"] == "state" and m["name"] == name]
                return found[-1] if found else None

            def mongo_state(name: str) -> dict | None:
                return client[run_id].states.find_one(
                    {"name": name}, sort=[("timestamp_ns", pymongo.DESCENDING)])

            def rest_state(name: str) -> dict | None:
                answer = requests.get(f"http://127.0.0.1:{port}/states/{quote(name)}",
                                      timeout=5)
                return answer.json() if answer.status_code == 200 else None

            def stored_as(state: dict | None, ns_suffix: str = "") -> dict | None:
                if state is None:
                    return None
                return {f: state[f + ns_suffix if f.endswith("_at") else f] for f in STATE_FIELDS}

            readers = {"stdout json": lambda n: stored_as(json_state(n)),
                       "mongodb": lambda n: stored_as(mongo_state(n), "_ns"),
                       "rest": lambda n: stored_as(rest_state(n))}
            for kind, name in names.items():
                for sink, read in readers.items():
                    def stored_is_inspected(read=read, name=name, kind=kind, sink=sink) -> None:
                        assert read(name) == truth[kind], f"{sink}: the state of {kind}"
                    passes_within(stored_is_inspected, 20)
            # The failing streak only grows; every sink holds one at least the health retries.
            assert 2 <= json_state(names["unhealthy"])["health_failing_streak"]
            assert 2 <= mongo_state(names["unhealthy"])["health_failing_streak"]
            mongo_doc = mongo_state(names["restarting"])
            assert mongo_doc["finished_at"].timestamp() == pytest.approx(
                truth["restarting"]["finished_at"] / 1e9, abs=0.001)

            # The line format: the changes only, the last one as docker inspect says.
            def state_lines(name: str) -> list[str]:
                return [line.split(" STATE: ", 1)[1] for line in line_sink.stdout
                        if line.startswith(f"[e2e-host/{name}] ") and " STATE: " in line]

            wait_for(lambda: state_lines(names["restarting"])[-1:] ==
                     ["exited (exit 3, restarts 2, oom no)"], 10, "the last state line")
            assert state_lines(names["unhealthy"])[-1] == \
                "running (restarts 0, oom no, health unhealthy)"
            repeats = len([m for m in pipeline.sink.json_lines()
                           if m["kind"] == "state" and m["name"] == names["restarting"]])
            changes = state_lines(names["restarting"])
            # Not one per state message: one per change (no two successive lines alike).
            assert len(changes) < repeats
            assert all(a != b for a, b in itertools.pairwise(changes)), changes
            print(f"restarting: {repeats} state messages, {len(changes)} lines: {changes}")
        finally:
            codes = [sink.stop() for sink in sinks]
        assert codes == [0, 0, 0], [sink.log() for sink in sinks]
