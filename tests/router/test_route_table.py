"""Which routes a message takes: the precedence of docs/routing.md."""

from __future__ import annotations

import pytest
from support.netns import synthetic_sample

from statspout import wire
from statspout.router.route_table import RouteTable
from statspout.router.routes_file import parse_routes
from statspout.selectors import SelectorFilter

ROUTES = parse_routes({"routes": {
    "prod": {"include": ["label=env=prod"], "exclude": ["name=*-debug"]},
    "batch": {"include": ["image=registry.local/batch/*", "label=tier=batch"]},
    "quiet": {"exclude": ["host=noisy-*"]},
}})


def sample(name: str = "web", labels: dict[str, str] | None = None, image: str = "nginx",
           host: str = "h1") -> wire.ContainerStats:
    return synthetic_sample(1, host, name, labels, image=image)


@pytest.fixture
def table() -> RouteTable:
    return RouteTable(routes=ROUTES)


def test_all_always_present_and_first(table: RouteTable) -> None:
    assert table.names == ["all", "prod", "batch", "quiet"]
    assert RouteTable().names == ["all"]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (sample(), ["all", "quiet"]),
        (sample(labels={"env": "prod"}), ["all", "prod", "quiet"]),
        (sample("web-debug", {"env": "prod"}), ["all", "quiet"]),  # exclude wins
        (sample(image="registry.local/batch/etl"), ["all", "batch", "quiet"]),
        (sample(labels={"tier": "batch"}, host="noisy-3"), ["all", "batch"]),
    ],
)
def test_a_sample_takes_every_route_it_matches(table, message, expected) -> None:
    assert table.routes_for(message) == expected


def test_ignore_label_wins_over_everything(table: RouteTable) -> None:
    labels = {"env": "prod", "statspout.ignore": "True", "statspout.routes": "prod"}
    assert table.routes_for(sample(labels=labels)) == []
    # Only "true" ignores: an operator's typo must not silently hide a container.
    assert "all" in table.routes_for(sample(labels={"statspout.ignore": "no"}))


def test_routes_label_names_the_only_routes(table: RouteTable) -> None:
    # Naming a route lets the container in without matching include; "all" only if named.
    assert table.routes_for(sample(labels={"statspout.routes": "prod"})) == ["prod"]
    assert table.routes_for(sample(labels={"statspout.routes": " batch, all ,batch"})) == [
        "batch", "all"]


def test_routes_label_still_honours_route_exclude(table: RouteTable) -> None:
    message = sample("api-debug", {"statspout.routes": "prod,batch"})
    assert table.routes_for(message) == ["batch"]


def test_routes_label_skips_unknown_routes(table: RouteTable) -> None:
    assert table.routes_for(sample(labels={"statspout.routes": "nope"})) == []
    assert table.routes_for(sample(labels={"statspout.routes": "nope,prod"})) == ["prod"]


def test_empty_routes_label_is_no_steering(table: RouteTable) -> None:
    assert table.routes_for(sample(labels={"statspout.routes": " , "})) == ["all", "quiet"]


def test_router_filter_applies_before_routes_and_labels() -> None:
    table = RouteTable(SelectorFilter.parse(exclude=["label=secret"]), ROUTES)
    assert table.routes_for(sample(labels={"secret": "1", "statspout.routes": "prod"})) == []
    table = RouteTable(SelectorFilter.parse(include=["host=h2"]), ROUTES)
    assert table.routes_for(sample(labels={"env": "prod"})) == []
    assert table.routes_for(sample(labels={"env": "prod"}, host="h2")) == ["all", "prod", "quiet"]


def test_events_take_the_same_routes_as_samples(table: RouteTable) -> None:
    labels = {"env": "prod"}
    stats = sample(labels=labels)
    event = wire.ContainerEvent(seq=2, host="h1", id=stats.id, name="web", image="nginx",
                                labels=labels, timestamp=1, action="stop")
    assert table.routes_for(event) == table.routes_for(stats) == ["all", "prod", "quiet"]


def test_with_routes_keeps_the_router_filter(table: RouteTable) -> None:
    table = RouteTable(SelectorFilter.parse(exclude=["name=hidden"]), ROUTES)
    reloaded = table.with_routes({})
    assert reloaded.names == ["all"]
    assert reloaded.routes_for(sample("hidden")) == []


def test_decisions_are_kept_per_container_metadata_and_never_go_stale() -> None:
    table = RouteTable(routes=ROUTES)
    assert table.routes_for(sample(labels={"env": "prod"})) == ["all", "prod", "quiet"]
    # The same container named again, or on another host, or with other labels, is decided anew.
    assert table.routes_for(sample("web-debug", {"env": "prod"})) == ["all", "quiet"]
    assert table.routes_for(sample(labels={"env": "prod"}, host="noisy-1")) == ["all", "prod"]
    assert table.routes_for(sample(labels={"env": "dev"})) == ["all", "quiet"]
    assert table.routes_for(sample(labels={"env": "prod"})) == ["all", "prod", "quiet"]
    # A reloaded routes file is a new table: nothing decided before carries over.
    reloaded = table.with_routes(parse_routes({"routes": {"dev": {"include": ["label=env=dev"]}}}))
    assert reloaded.routes_for(sample(labels={"env": "dev"})) == ["all", "dev"]


def test_engine_messages_are_judged_on_host_selectors_alone() -> None:
    """An engine message has no container: label, name and image selectors neither let it in
    nor keep it out, host selectors do (docs/routing.md)."""
    def engine(host: str) -> wire.EngineInfo:
        return wire.EngineInfo(
            seq=1, host=host, timestamp=1, interval_s=1.0, engine="docker",
            server_version="20.10", containers_running=1, containers_paused=0,
            containers_stopped=2, images=3, cpus=2, memory_total=2**34)

    routes = parse_routes({"routes": {
        "prod": {"include": ["label=env=prod"]},
        "db": {"include": ["host=db-*"]},
        "quiet": {"exclude": ["host=noisy-*"]},
    }})
    table = RouteTable(SelectorFilter.parse(include=["label=statspout.test=x"]), routes)
    assert table.routes_for(engine("db-1")) == ["all", "prod", "db", "quiet"]
    assert table.routes_for(engine("noisy-2")) == ["all", "prod"]
    only_web = RouteTable(SelectorFilter.parse(include=["host=web-*"]), routes)
    assert only_web.routes_for(engine("db-1")) == []
