"""``statspout-sink NAME``: run one sink as a worker process subscribed to the router."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import SimpleNamespace

import zmq

from statspout import bus, cli, handshakes, security
from statspout.logs import mask_secrets
from statspout.sinks import registry
from statspout.sinks.base import Sink, describe_options
from statspout.sinks.checkpoint import CheckpointFile, default_state_dir
from statspout.sinks.resume import ReplayClient, RouteResume
from statspout.sinks.runtime import SinkWorker

log = logging.getLogger("statspout.sink")

DESCRIPTION = """\
Run one sink as a worker: subscribe to the router's output and hand every sample to the sink.
A sink of your own package is found by its entry point in the group "statspout.sinks", or with
--sink module:Class.

The worker saves the last route message its store has settled in --state-dir, and after a
restart (its own or the router's) asks the router's --replay socket for what it missed
(reliability.md in the statspout documentation).

Sinks: {sinks}
`statspout-sink NAME --help` lists the options of sink NAME.
"""


def build_parser(sink_class: type[Sink] | None) -> cli.OptionParser:
    parser = cli.OptionParser(
        prog="statspout-sink",
        env_prefix="STATSPOUT_SINK_",
        description=DESCRIPTION.format(sinks=", ".join(registry.available())),
    )
    parser.add_argument("name", nargs="?", help="the sink to run (see above)")
    parser.option("--sink", help="load the sink class from module:Class instead of by name",
                  metavar="MODULE:CLASS", env=False)
    parser.option("--connect", help="the router's output endpoint",
                  default=bus.DEFAULT_ROUTER_OUTPUT, type=cli.endpoint)
    parser.option("--route", help="the route to subscribe to", default=bus.DEFAULT_ROUTE)
    parser.option("--hwm", help="payloads queued from the router (a batch is one) before the "
                  "router drops",
                  default=bus.DEFAULT_HWM, type=cli.positive_int)
    parser.option("--max-message-bytes", help="largest message frame taken from the router; "
                  "a larger one drops the link (reliability.md in the statspout documentation)",
                  default=bus.DEFAULT_MAX_MESSAGE_BYTES,
                  type=cli.whole_number(bus.MIN_MAX_MESSAGE_BYTES), metavar="BYTES")
    handshakes.add_unlinked_warning_option(parser)
    restarts = parser.add_argument_group(
        "restarts and replay (reliability.md in the statspout documentation)")
    parser.option("--replay", help="the router's replay endpoint, asked for missed messages; "
                  "default: the port after --connect's (:5558)", type=cli.endpoint,
                  metavar="ENDPOINT", group=restarts)
    parser.option("--state-dir", help="folder of the checkpoint files (one per sink name and "
                  "route)", default=default_state_dir(), metavar="DIR", group=restarts)
    parser.switch("--no-replay", help="neither checkpoint nor ask for replay: holes are only "
                  "counted (gaps)", group=restarts)
    security.add_client_options(parser)
    cli.add_common_options(parser)
    if sink_class is not None:
        group = parser.add_argument_group(f"options of the {sink_class.name} sink")
        for option in sink_class.options:
            parser.option(
                f"--{sink_class.name}.{option.name}",
                help=option.help,
                default=option.default,
                type=option.type,
                choices=option.choices,
                repeatable=option.repeatable,
                metavar=option.metavar,
                group=group,
                env_prefix=cli.ENV_PREFIX,  # --stdout.format → STATSPOUT_STDOUT_FORMAT
            )
    return parser


def _choose_sink_class(argv: Sequence[str]) -> type[Sink] | None:
    """Find the sink named on the command line, before full parsing,
    so that its own options can be added to the parser. None when no sink is named."""
    pre = cli.OptionParser(prog="statspout-sink", add_help=False, env_prefix="STATSPOUT_SINK_")
    pre.add_argument("name", nargs="?")
    pre.option("--sink", help="", env=False)
    known, _ = pre.parse_known_args(argv)
    if not known.name and not known.sink:
        return None
    try:
        return registry.load(known.name, known.sink)
    except registry.SinkNotFound as exc:
        pre.error(str(exc))


def sink_settings(sink_class: type[Sink], parsed: argparse.Namespace) -> SimpleNamespace:
    # argparse keeps the dot of "--stdout.format" in the destination: "stdout.format".
    return SimpleNamespace(**{
        option.attribute: getattr(parsed, f"{sink_class.name}.{option.name}".replace("-", "_"))
        for option in sink_class.options
    })


def describe_settings(sink_class: type[Sink], settings: SimpleNamespace) -> str:
    """The sink's options as the operator set them, for the start-up log; secrets masked."""
    return describe_options(sink_class.logged_options(settings), settings)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    sink_class = _choose_sink_class(argv)
    parser = build_parser(sink_class)
    parsed = parser.parse_args(argv)
    if sink_class is None:
        parser.error(f"name a sink ({', '.join(registry.available())}) or pass --sink module:Class")
    keys = security.client_keys_from_args(parsed, parser)
    if parsed.replay is None:
        try:
            parsed.replay = bus.replay_endpoint_for(parsed.connect)
        except ValueError as exc:
            parser.error(f"--replay: {exc}")
    cli.configure_logging(parsed.log_level)

    settings = sink_settings(sink_class, parsed)
    log.info("sink %s: %s", sink_class.name, describe_settings(sink_class, settings))
    try:
        sink = sink_class(settings)
        sink.open()
    except Exception as exc:
        log.error("sink %s could not start: %s", sink_class.name, mask_secrets(str(exc)))
        return 1

    stop = cli.stop_on_termination()

    context = zmq.Context()
    socket = bus.sink_subscriber(context, parsed.connect, parsed.route, parsed.hwm, keys,
                                 parsed.max_message_bytes)
    watch = handshakes.watch_router_link(
        socket, parsed.connect, log, parsed.unlinked_warning,
        "no router has taken the link at {endpoint} for {seconds:.0f} s — wrong address or "
        "CURVE key? (nothing arrives meanwhile)")
    log.info("sink %s subscribed to route %r at %s", sink_class.name, parsed.route, parsed.connect)
    client = None
    resume = None
    if not parsed.no_replay:
        client = ReplayClient(lambda: bus.replay_client(context, parsed.replay, keys,
                                                        parsed.max_message_bytes))
        resume = RouteResume(parsed.route, client,
                             CheckpointFile(parsed.state_dir, sink_class.name, parsed.route))
        log.info("sink %s: checkpoint %s, replay from %s", sink_class.name,
                 resume.checkpoint_path, parsed.replay)
    worker = SinkWorker(sink, socket, report_interval=parsed.report_interval, resume=resume)
    try:
        worker.run(stop)
    finally:
        watch.stop()
        try:
            sink.close()
        except Exception as exc:
            log.error("sink %s failed to close cleanly: %s", sink_class.name,
                      mask_secrets(repr(exc)))
        worker.checkpoint()  # close wrote out the buffer: the settled position moved on
        if client is not None:
            client.close()
        socket.close()
        context.term()
    log.info("sink %s stopped", sink_class.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
