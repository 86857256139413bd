"""``statspout-router``: bind the collectors' input and the sinks' output, and route."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence

import zmq

from statspout import bus, cli
from statspout.router.forwarder import Router
from statspout.router.routing import RouteTable
from statspout.router.selectors import BadSelector, SelectorFilter

log = logging.getLogger("statspout.router")

DESCRIPTION = """\
Take in the statistics of any number of collectors, filter them by container labels and
names, and publish them to the sink workers. Selectors: label=KEY, label=KEY=VALUE,
label=KEY!=VALUE, name=GLOB, image=GLOB, host=GLOB; a container passes when any --include
matches (or none is given) and no --exclude matches. A container labelled
statspout.ignore=true is never routed.
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
    parser.option("--hwm", help="messages queued per peer before the router drops for it",
                  default=bus.DEFAULT_HWM, type=cli.positive_int)
    cli.add_common_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        selector_filter = SelectorFilter.parse(args.include, args.exclude)
    except BadSelector as exc:
        parser.error(str(exc))
    cli.configure_logging(args.log_level)

    context = zmq.Context()
    try:
        input_socket = bus.router_input(context, args.listen, args.hwm)
        output_socket = bus.router_output(context, args.publish, args.hwm)
    except zmq.ZMQError as exc:
        log.error("cannot bind: %s (input %s, output %s)", exc, args.listen, args.publish)
        context.destroy()
        return 1

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("routing from %s to %s", args.listen, args.publish)
    try:
        Router(input_socket, output_socket, RouteTable(selector_filter),
               report_interval=args.report_interval).run(stop)
    finally:
        input_socket.close()
        output_socket.close()
        context.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
