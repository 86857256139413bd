"""``statspout-collector``: sample this Docker host's containers and publish to the router."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator, Sequence

import docker
import zmq

from statspout import bus, cli, handshakes, security, wire
from statspout.backoff import Backoff
from statspout.collector.api_source import (
    API_MODES,
    DEFAULT_STREAMS_MAX,
    STREAM_BELOW_S,
    ApiSource,
)
from statspout.collector.batching import (
    DEFAULT_BATCH_BYTES,
    DEFAULT_BATCH_ITEMS,
    MIN_QUEUED_BATCHES,
    queued_payloads,
)
from statspout.collector.cgroup_source import DEFAULT_CGROUP_ROOT, DEFAULT_PROC_ROOT, CgroupSource
from statspout.collector.loop import STATES_MODES, Collector, ReadingSource

log = logging.getLogger("statspout.collector")

DESCRIPTION = """\
Discover the running containers of this Docker host (a listing at start, then the events
stream), sample their CPU, memory, network and block IO every interval, and publish them to
the router. The Docker endpoint comes from DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH
as the docker package reads them (the local unix socket by default). Only GET requests are made.
"""

MIN_INTERVAL_S = 1.0
CONNECT_BACKOFF_FIRST_S = 1.0
CONNECT_BACKOFF_MAX_S = 30.0
DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
DEFAULT_DOCKER_HOST = f"unix://{DEFAULT_DOCKER_SOCKET}"
ROOTFUL_PODMAN_SOCKET = "/run/podman/podman.sock"


def build_parser() -> cli.OptionParser:
    parser = cli.OptionParser(
        prog="statspout-collector", description=DESCRIPTION, env_prefix="STATSPOUT_COLLECTOR_"
    )
    parser.option("--interval", help="seconds between samples of each container",
                  default=5.0, type=cli.seconds(MIN_INTERVAL_S))
    parser.option("--connect", help="the router's input endpoint",
                  default=bus.DEFAULT_ROUTER_INPUT, type=cli.endpoint)
    parser.option("--host", help="host name carried by every message",
                  default=socket.gethostname(), metavar="NAME")
    parser.option("--max-concurrency", help="containers read at the same time through the "
                  "API (the cgroup source reads a cycle in turn)",
                  default=64, type=cli.positive_int)
    parser.option("--source", help="where figures come from: cgroup (the host's cgroup files and "
                  "/proc; Docker for discovery only), api (Docker's stats API), auto (cgroup "
                  "when readable, else api)", default="auto", choices=["auto", "cgroup", "api"])
    parser.option("--api-mode", help="how the api source reads: stream (a stats stream per "
                  "container, the daemon pushes every second), poll (one one-shot request per "
                  f"container and interval), auto (stream on Docker below a {STREAM_BELOW_S:g} s "
                  "interval, else poll)", default="auto", choices=list(API_MODES))
    parser.option("--api-streams-max", help="stats streams followed at most (one thread and "
                  "one connection each); containers beyond are polled",
                  default=DEFAULT_STREAMS_MAX, type=cli.positive_int)
    parser.option("--proc-root", help="the host's /proc as the collector sees it (cgroup source)",
                  default=DEFAULT_PROC_ROOT, metavar="DIR")
    parser.option("--cgroup-root", help="the host's /sys/fs/cgroup as the collector sees it "
                  "(cgroup source)", default=DEFAULT_CGROUP_ROOT, metavar="DIR")
    parser.option("--states", help="containers that get a state message every interval: all "
                  "(running or not, until removed), running (running, paused, restarting; "
                  "changes of the others are still sent), none (no state messages)",
                  default="all", choices=list(STATES_MODES))
    parser.option("--hwm", help="messages queued for the router before they are dropped "
                  f"(with batches: --hwm / --batch-items batches, at least {MIN_QUEUED_BATCHES})",
                  default=bus.DEFAULT_HWM, type=cli.positive_int)
    parser.option("--resend-seconds", help="what was published in the last this many seconds "
                  "before the link to the router was lost is sent again to the next router "
                  "(what a killed router held is lost with it; sinks drop the repeats); 0: off",
                  default=bus.DEFAULT_RESEND_S, type=cli.seconds(0))
    parser.option("--batch-items", help="messages published in one batch at most (a cycle's "
                  f"samples, states and engine message go in one when they fit; at most "
                  f"{wire.MAX_BATCH_ITEMS}); 1: one message at a time, as a router of wire 1.1 "
                  "needs (it counts batches as malformed)",
                  default=DEFAULT_BATCH_ITEMS, type=cli.positive_int)
    parser.option("--batch-bytes", help="bytes of one batch at most: keep it under the "
                  "router's --max-message-bytes (default 1 MiB); a message larger than this "
                  "goes alone", default=DEFAULT_BATCH_BYTES, type=cli.whole_number(1024))
    handshakes.add_unlinked_warning_option(parser)
    security.add_client_options(parser)
    cli.add_common_options(parser)
    return parser


def engine_socket(
    environ: dict[str, str], *, docker_socket: str = DEFAULT_DOCKER_SOCKET,
    rootful_podman: str = ROOTFUL_PODMAN_SOCKET,
) -> str | None:
    """The endpoint to use when DOCKER_HOST is unset and /var/run/docker.sock is absent: a
    rootless Docker ($XDG_RUNTIME_DIR/docker.sock) or Podman (…/podman/podman.sock) socket, or
    a rootful Podman one, that exists; None to leave it to docker-py."""
    if environ.get("DOCKER_HOST") or os.path.exists(docker_socket):
        return None
    runtime = environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    for path in (os.path.join(runtime, "docker.sock"),
                 os.path.join(runtime, "podman", "podman.sock"),
                 rootful_podman):
        if os.path.exists(path):
            return f"unix://{path}"
    return None


def connect_docker(max_pool_size: int, stop: threading.Event) -> docker.DockerClient | None:
    """A client for the daemon, waiting (with backoff) until it answers; None if stopped."""
    waits = Backoff(CONNECT_BACKOFF_FIRST_S, CONNECT_BACKOFF_MAX_S)
    while not stop.is_set():
        try:
            return docker.from_env(max_pool_size=max_pool_size, timeout=30)
        except docker.errors.DockerException as exc:
            delay = waits.next_delay()
            log.warning("Docker is not answering at %s (%s); trying again in %.1f s",
                        docker_host(), docker_problem(exc), delay)
            stop.wait(delay)
    return None


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def docker_problem(exc: BaseException) -> str:
    """The operating system's reason beneath the docker package's wrapping, in words, with the
    socket it concerns and what to check; the wrapper's own text when there is none."""
    where = docker_host().removeprefix("unix://")
    for cause in _causes(exc):
        if isinstance(cause, FileNotFoundError):
            return f"no such file: {where} — is dockerd running?"
        if isinstance(cause, PermissionError):
            return f"permission denied: {where} — is this user in the docker group?"
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused: {where} — is dockerd running?"
        if isinstance(cause, OSError) and cause.strerror:
            return f"{cause.strerror}: {where}"
    return str(exc)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, what it was raised from, and the exceptions in their arguments (requests and
    urllib3 carry the socket's error as an argument)."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(a for a in current.args if isinstance(a, BaseException))
        pending.extend(c for c in (current.__cause__, current.__context__) if c is not None)


def choose_source(args: argparse.Namespace, client: docker.DockerClient) -> ReadingSource:
    """The source ``--source`` asks for; ``auto`` takes the cgroup files when they can be read
    from here, and reads through the API any container whose files cannot."""
    api = ApiSource(client, mode=args.api_mode, interval_s=args.interval,
                    streams_max=args.api_streams_max, report_interval_s=args.report_interval)
    if args.source == "api":
        log.info("figures from the Docker stats API (--source api), by %s", api.describe())
        return api
    # The fast path's fallback polls: the fast path reads a cycle in turn (a read waiting for
    # a stream's push would hold up the others) and keeps no streams to close.
    fast = CgroupSource(client, proc_root=args.proc_root, cgroup_root=args.cgroup_root,
                        fallback=ApiSource(client) if args.source == "auto" else None)
    reason = fast.unreadable_reason()
    if reason is None:
        log.info("figures from cgroup files (%s); Docker for discovery only (--source %s)",
                 fast.describe(), args.source)
        return fast
    log.info("figures from the Docker stats API: %s (--source %s); by %s", reason, args.source,
             api.describe())
    return api


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.host.strip():
        parser.error("--host must not be empty")
    if args.batch_items > wire.MAX_BATCH_ITEMS:
        parser.error(f"--batch-items: {args.batch_items} is over {wire.MAX_BATCH_ITEMS}, the "
                     "most a batch may carry")
    if args.source == "cgroup":
        reason = CgroupSource(None, proc_root=args.proc_root,
                              cgroup_root=args.cgroup_root).unreadable_reason()
        if reason is not None:
            parser.error(f"--source cgroup: {reason} (see --proc-root, --cgroup-root)")
    keys = security.client_keys_from_args(args, parser)
    cli.configure_logging(args.log_level)
    detected = engine_socket(dict(os.environ))
    if detected is not None:
        os.environ["DOCKER_HOST"] = detected  # read by docker.from_env, here and per thread
        log.info("DOCKER_HOST unset and %s absent: using %s", DEFAULT_DOCKER_SOCKET, detected)

    stop = cli.stop_on_termination()

    # One pooled connection per concurrent read and per followed stream.
    client = connect_docker(args.max_concurrency + args.api_streams_max, stop)
    if client is None:
        return 0
    context = zmq.Context()
    publisher = bus.CollectorPublisher(context, args.connect,
                                       queued_payloads(args.hwm, args.batch_items),
                                       security=keys, resend_s=args.resend_seconds)
    watch = handshakes.watch_router_link(
        publisher.socket, args.connect, log, args.unlinked_warning,
        "no router has subscribed at {endpoint} for {seconds:.0f} s — wrong address or CURVE "
        "key? (messages are counted as dropped_no_subscriber meanwhile)",
        on_linked=publisher.link_made, on_unlinked=publisher.link_lost)
    collector = Collector(
        client_factory=functools.partial(docker.from_env, timeout=30),
        source=choose_source(args, client),
        publisher=publisher,
        host=args.host,
        interval=args.interval,
        max_concurrency=args.max_concurrency,
        report_interval=args.report_interval,
        states=args.states,
        batch_items=args.batch_items,
        batch_bytes=args.batch_bytes,
    )
    log.info("collecting every %g s as host %r, publishing to %s",
             args.interval, args.host, args.connect)
    try:
        collector.run(stop)
    finally:
        watch.stop()
        publisher.close()
        context.term()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
