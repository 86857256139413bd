"""``statspout-router``: bind the collectors' input and the sinks' output, and route."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import zmq

from statspout import bus, cli, handshakes, security
from statspout.router import status
from statspout.router.loop import (
    DEFAULT_HOST_EXPIRY_S,
    DEFAULT_MAX_HOSTS,
    OTHER_HOSTS,
    Router,
)
from statspout.router.reload import Reloader
from statspout.router.replay import (
    DEFAULT_REPLAY_BYTES,
    DEFAULT_REPLAY_SECONDS,
    DEFAULT_START_GRACE_S,
    ReplayLimits,
    ReplayStore,
    StartGate,
)
from statspout.router.route_table import RouteTable
from statspout.router.routes_file import BadRoutes, load_routes
from statspout.selectors import BadSelector, SelectorFilter

log = logging.getLogger("statspout.router")

DESCRIPTION = """\
Take in the statistics of any number of collectors, filter them by container labels and
names, and publish them to the sink workers, per route. Selectors: label=KEY, label=KEY=VALUE,
label=KEY!=VALUE, name=GLOB, image=GLOB, host=GLOB; a container passes when any --include
matches (or none is given) and no --exclude matches. A container labelled
statspout.ignore=true is never routed; one labelled statspout.routes=a,b goes only to those
routes. Routes come from --routes FILE (routing.md in the statspout documentation); the route
"all" always exists.

After a start the router reads no input until a sink subscribes or --start-grace passes;
it keeps the last messages of every route (--replay-bytes, --replay-seconds) for sinks that
ask for what they missed on --replay (reliability.md in the statspout documentation).

SIGHUP reloads the routes file and the authorized keys. Without CURVE keys the router binds
only to loopback (or ipc://) unless --insecure is given. --status asks a running router.
"""


def build_parser() -> cli.OptionParser:
    parser = cli.OptionParser(
        prog="statspout-router", description=DESCRIPTION, env_prefix="STATSPOUT_ROUTER_"
    )
    parser.option("--listen", help="input endpoint the collectors connect to",
                  default=bus.DEFAULT_ROUTER_INPUT, type=cli.endpoint)
    parser.option("--publish", help="output endpoint the sink workers connect to",
                  default=bus.DEFAULT_ROUTER_OUTPUT, type=cli.endpoint)
    parser.option("--include", help="route only containers matching a selector (repeatable)",
                  repeatable=True, metavar="SELECTOR")
    parser.option("--exclude", help="never route containers matching a selector (repeatable)",
                  repeatable=True, metavar="SELECTOR")
    parser.option("--routes", help="TOML file of named routes; reloaded on SIGHUP",
                  metavar="FILE")
    parser.option("--hwm", help="payloads queued per peer (a batch is one) before the router "
                  "drops for it",
                  default=bus.DEFAULT_HWM, type=cli.positive_int)
    bounds = parser.add_argument_group("bounds (reliability.md in the statspout documentation)")
    parser.option("--max-message-bytes", help="largest input message taken; a larger one "
                  "drops the collector's link", default=bus.DEFAULT_MAX_MESSAGE_BYTES,
                  type=cli.whole_number(bus.MIN_MAX_MESSAGE_BYTES), metavar="BYTES",
                  group=bounds)
    parser.option("--max-hosts", help="collector hosts counted one by one; more are counted "
                  f"together as {OTHER_HOSTS}", default=DEFAULT_MAX_HOSTS,
                  type=cli.positive_int, metavar="N", group=bounds)
    parser.option("--host-expiry", help="seconds of silence after which a host's counts are "
                  "forgotten", default=DEFAULT_HOST_EXPIRY_S, type=cli.seconds(1),
                  metavar="SECONDS", group=bounds)
    restarts = parser.add_argument_group(
        "restarts and replay (reliability.md in the statspout documentation)")
    parser.option("--replay", help="endpoint where sinks ask for the messages they missed; "
                  "default: the port after --publish's (:5558)", type=cli.endpoint,
                  metavar="ENDPOINT", group=restarts)
    parser.option("--replay-bytes", help="bytes of messages kept per route for replay "
                  "(payload + 120 B per message); the oldest go first",
                  default=DEFAULT_REPLAY_BYTES, type=cli.whole_number(0), metavar="BYTES",
                  group=restarts)
    parser.option("--replay-seconds", help="seconds a message is kept for replay at most",
                  default=DEFAULT_REPLAY_SECONDS, type=cli.seconds(0), metavar="SECONDS",
                  group=restarts)
    parser.option("--start-grace", help="seconds after a start during which the input is "
                  "held until a sink subscribes (0: forward at once)",
                  default=DEFAULT_START_GRACE_S, type=cli.seconds(0), metavar="SECONDS",
                  group=restarts)
    group = parser.add_argument_group(security.SECURITY_GROUP)
    parser.option("--curve-secret-key", help="the router's key pair (a .key_secret file); "
                  "turns CURVE on for input and output", metavar="FILE", group=group)
    parser.option("--authorized-keys", help="folder of the public keys (*.key) of collectors "
                  "and sinks allowed in; reloaded on SIGHUP", metavar="DIR", group=group)
    parser.switch("--insecure", help="allow binding a non-loopback address without CURVE",
                  group=group)
    security.add_keys_dir_option(parser, group)
    control = parser.add_argument_group("status")
    parser.option("--control", help="local control endpoint that answers --status",
                  default=bus.default_control_endpoint(), type=cli.endpoint, group=control)
    parser.switch("--status", help="print the running router's counters and exit",
                  group=control, env=False)
    parser.switch("--json", help="with --status: print JSON instead of tables", group=control,
                  env=False)
    cli.add_common_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.status:
        return print_status(args.control, args.json)
    try:
        selector_filter = SelectorFilter.parse(args.include, args.exclude)
    except BadSelector as exc:
        parser.error(str(exc))
    routes = {}
    if args.routes:
        try:
            routes = load_routes(args.routes)
        except BadRoutes as exc:
            parser.error(str(exc))
    security.server_files_from_args(args)
    if args.replay is None:
        try:
            args.replay = bus.replay_endpoint_for(args.publish)
        except ValueError as exc:
            parser.error(f"--replay: {exc}")
    check_security_options(parser, args)
    if not bus.is_local_endpoint(args.control):
        parser.error(f"--control {args.control}: the control endpoint must be local (ipc://)")
    cli.configure_logging(args.log_level)
    if control_answers(args.control):
        log.error("--control %s: another router answers there; refusing to take it over (stop "
                  "that router, or give this one its own --control)", args.control)
        return 1
    if args.insecure and not args.curve_secret_key:
        log.warning("--insecure: links are neither encrypted nor authenticated; anyone who "
                    "reaches %s can feed the router and anyone who reaches %s can read it",
                    args.listen, args.publish)

    context = zmq.Context()
    server_security = None
    if args.curve_secret_key:
        try:
            server_security = security.start_server_security(
                context, args.curve_secret_key, args.authorized_keys)
        except security.BadKey as exc:
            context.destroy(linger=0)
            parser.error(str(exc))
    try:
        input_socket = bind("--listen", args.listen, lambda: bus.router_input(
            context, args.listen, args.hwm, server_security, args.max_message_bytes))
        output_socket = bind("--publish", args.publish, lambda: bus.router_output(
            context, args.publish, args.hwm, server_security))
        replay_socket = bind("--replay", args.replay, lambda: bus.replay_server(
            context, args.replay, server_security))
        control_socket = bind("--control", args.control,
                              lambda: bus.control_server(context, args.control))
    except CannotBind as exc:
        log.error("%s", exc)
        _close(context, server_security)
        return 1

    stop = cli.stop_on_termination()
    reload_requested = cli.event_on_signals(signal.SIGHUP)

    authenticator = server_security.authenticator if server_security else None
    input_label = f"--listen {args.listen}"
    watch = handshakes.HandshakeWatch(
        {input_label: input_socket, f"--publish {args.publish}": output_socket},
        log, _describe_failed_peer, report_refused_keys=False)
    run_id = int.from_bytes(os.urandom(8), "big")
    router = Router(
        input_socket, output_socket, RouteTable(selector_filter, routes),
        report_interval=args.report_interval,
        control_socket=control_socket,
        is_authorized=authenticator.is_authorized if authenticator else None,
        max_hosts=args.max_hosts,
        host_expiry_s=args.host_expiry,
        input_links_ended=lambda: watch.states[input_label].ended,
        run_id=run_id,
        replay=ReplayStore(run_id, ReplayLimits(args.replay_bytes, args.replay_seconds)),
        replay_socket=replay_socket,
        gate=StartGate(args.start_grace),
    )
    reloader = Reloader(
        args.routes, authenticator,
        lambda: bus.router_output(context, args.publish, args.hwm, server_security),
    )
    log.info("routing from %s to %s (routes %s; CURVE %s; status at %s; run %016x; replay at "
             "%s, %d bytes and %g s per route; input held up to %g s for sinks)",
             args.listen, args.publish, ", ".join(router.routes.names),
             "on" if server_security else "off", args.control, run_id, args.replay,
             args.replay_bytes, args.replay_seconds, args.start_grace)
    try:
        router.run(stop, reload_requested, reloader)
    finally:
        watch.stop()
        _close(context, server_security)
        _remove_ipc_file(args.control)
    return 0


def check_security_options(parser: cli.OptionParser, args: argparse.Namespace) -> None:
    """CURVE needs both its options; without it only local endpoints, unless --insecure."""
    if args.curve_secret_key and not args.authorized_keys:
        parser.error("--curve-secret-key needs --authorized-keys DIR (who may connect)")
    if args.authorized_keys and not args.curve_secret_key:
        parser.error("--authorized-keys needs --curve-secret-key FILE (the router's key pair)")
    if args.curve_secret_key or args.insecure:
        return
    for flag, endpoint in (("--listen", args.listen), ("--publish", args.publish),
                           ("--replay", args.replay)):
        if not bus.is_local_endpoint(endpoint):
            parser.error(f"{flag} {endpoint} is not a loopback address: refusing to bind it "
                         "without CURVE (pass --curve-secret-key and --authorized-keys, or "
                         "--keys-dir, or --insecure)")


class CannotBind(Exception):
    """An endpoint the router cannot bind; the text names the option, endpoint and reason."""


def bind(flag: str, endpoint: str, make: Callable[[], zmq.Socket]) -> zmq.Socket:
    try:
        return make()
    except zmq.ZMQError as exc:
        reason = zmq.strerror(exc.errno) if exc.errno else str(exc)
        raise CannotBind(f"cannot bind {flag} {endpoint}: {reason}") from None
    except OSError as exc:
        raise CannotBind(f"cannot bind {flag} {endpoint}: {exc.strerror or exc}") from None


def control_answers(endpoint: str) -> bool:
    """True when a running router answers on ``endpoint``: binding an ipc:// path that is in
    use silently takes it over from the router that has it."""
    if endpoint.startswith("ipc://") and not Path(endpoint[len("ipc://"):]).exists():
        return False
    try:
        status.query(endpoint, timeout_ms=1000)
    except TimeoutError:
        return False  # a file left behind by a router that died: ours to take
    return True


def _describe_failed_peer(label: str, reason: str, count: int) -> str:
    # The router's end of a handshake knows only its own endpoint; ZAP (security.py) logs the
    # address of a peer whose key it refused.
    return f"a peer failed the handshake on {label}: {reason} ({count} so far)"


def print_status(endpoint: str, as_json: bool) -> int:
    try:
        figures = status.query(endpoint)
    except TimeoutError as exc:
        print(f"statspout-router: {exc} (is the router running with --control {endpoint}?)",
              file=sys.stderr)
        return 1
    try:
        print(json.dumps(figures, indent=2) if as_json else status.format_table(figures))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left early (`| head`): not an error. Stdout goes to /dev/null so that the
        # interpreter's own flush at exit stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _close(context: zmq.Context, server_security: security.ServerSecurity | None) -> None:
    """Close every socket of ``context`` (also one whose bind failed, which would otherwise
    hold ``term`` for ever), after the ZAP thread has closed its own."""
    if server_security is not None:
        server_security.authenticator.stop()
    context.destroy(linger=bus.LINGER_MS)


def _remove_ipc_file(endpoint: str) -> None:
    """The control socket's file goes at exit: nobody answers there any more."""
    if endpoint.startswith("ipc://"):
        Path(endpoint[len("ipc://"):]).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
