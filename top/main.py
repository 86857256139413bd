"""``statspout-top``: the command line of the live view and of ``--once`` snapshots."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Sequence

from statspout import bus, cli, security
from statspout.top import render
from statspout.top.fleet import FleetTable
from statspout.top.state import ViewState, frame
from statspout.top.subscription import Subscription
from statspout.top.view import COLUMNS, BadSelector

log = logging.getLogger("statspout.top")

DESCRIPTION = """\
Show every container of every host that the router routes, one row each, refreshed every
second, like `docker stats` for the whole fleet. Keys: c m % i b p h n sort by CPU, memory,
memory %, net I/O, block I/O, PIDs, host, name (the same key again: the other way); r reverse;
/ filter with the router's selectors (name=GLOB host=GLOB image=GLOB label=KEY[=VALUE],
label=KEY!=VALUE; -SELECTOR excludes; a bare word is name=*WORD*); arrows, PgUp/PgDn scroll;
q quits. Marks: ! no sample for --stale-intervals intervals, x stopped, p paused.
"""


def build_parser() -> cli.OptionParser:
    parser = cli.OptionParser(prog="statspout-top", description=DESCRIPTION,
                              env_prefix="STATSPOUT_TOP_")
    parser.option("--connect", help="the router's output endpoint",
                  default=bus.DEFAULT_ROUTER_OUTPUT, type=cli.endpoint)
    parser.option("--route", help="the route to subscribe to", default=bus.DEFAULT_ROUTE)
    parser.option("--hwm", help="messages queued from the router before the router drops",
                  default=bus.DEFAULT_HWM, type=cli.positive_int)
    parser.option("--sort", help="the column to sort by", default="cpu", choices=list(COLUMNS))
    parser.switch("--reverse", help="sort the other way (smallest or Z first)")
    parser.option("--filter", help="selectors a container must pass to be shown (see above)",
                  default="", metavar="SELECTORS")
    parser.option("--refresh", help="seconds between redraws", default=1.0,
                  type=cli.seconds(0.1))
    parser.option("--interval", help="the collectors' sampling interval in seconds, assumed "
                  "until two samples of a container show it", default=5.0, type=cli.seconds(0.1))
    parser.option("--stale-intervals", help="intervals without a sample after which a "
                  "container is marked !", default=3, type=cli.positive_int)
    parser.option("--forget-after", help="seconds without a message after which a container "
                  "leaves the view", default=300.0, type=cli.seconds(1))
    parser.option("--max-containers", help="containers kept at most; more are counted as "
                  "'full' in the title", default=10_000, type=cli.positive_int)
    parser.switch("--once", help="print one snapshot after --wait seconds and exit")
    parser.switch("--json", help="with --once: print the snapshot as JSON")
    parser.option("--wait", help="with --once: seconds to listen before printing (at least "
                  "one sampling interval, to hear from every container)", default=6.0,
                  type=cli.seconds(0.1))
    parser.option("--log-file", help="where the live view logs (it owns the terminal; "
                  "without this its logs are dropped, its counters are shown in the title)",
                  metavar="FILE")
    security.add_client_options(parser)
    cli.add_common_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keys = security.client_keys_from_args(args, parser)
    state = ViewState(sort_column=args.sort, reverse=args.reverse)
    try:
        state.set_filter(args.filter)
    except BadSelector as exc:
        parser.error(f"--filter: {exc}")
    if args.json and not args.once:
        parser.error("--json goes with --once")
    table = FleetTable(default_interval_s=args.interval, stale_intervals=args.stale_intervals,
                       forget_after_s=args.forget_after, max_containers=args.max_containers)
    if args.once:
        cli.configure_logging(args.log_level)
        return print_once(table, state, args, keys)
    _log_to_file(args.log_file, args.log_level)
    return run_live(table, state, args, keys)


def _log_to_file(path: str | None, level: str) -> None:
    """The live view owns the terminal: a log line on stderr would tear the screen."""
    if path is None:
        logging.getLogger().addHandler(logging.NullHandler())
        logging.getLogger().setLevel(logging.CRITICAL + 1)
        return
    logging.basicConfig(filename=path, level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def print_once(table: FleetTable, state: ViewState, args: argparse.Namespace,
               keys: security.ClientKeys | None) -> int:
    subscription = Subscription(table, args.connect, args.route, args.hwm, keys,
                                args.report_interval).start()
    threading.Event().wait(args.wait)  # listening is the job: one interval of samples
    subscription.stop()
    if subscription.counts.received == 0:
        print(f"statspout-top: no message from the router at {args.connect} (route "
              f"{args.route!r}) within {args.wait:g} s", file=sys.stderr)
        return 1
    snapshot = table.snapshot()
    shown = frame(snapshot, state)
    if args.json:
        print(json.dumps(render.snapshot_json(shown.rows, shown.hosts, snapshot.hosts),
                         indent=1))
    else:
        sys.stdout.write(render.snapshot_text(shown.rows, shown.hosts))
    return 0


def run_live(table: FleetTable, state: ViewState, args: argparse.Namespace,
             keys: security.ClientKeys | None) -> int:
    from statspout.top.app import TopApp  # Textual only for the live view

    subscription = Subscription(table, args.connect, args.route, args.hwm, keys,
                                args.report_interval).start()

    source = args.connect
    if args.route != bus.DEFAULT_ROUTE:
        source += f" route {args.route}"

    def problems() -> str:
        counts, full = subscription.counts, table.counts.table_full
        if counts.received == 0:
            return f"waiting for the router at {source}"
        lost = {"gaps": counts.gaps, "malformed": counts.malformed, "full": full}
        return " ".join(f"{k}={v}" for k, v in lost.items() if v)

    app = TopApp(table, state, refresh_s=args.refresh, describe_source=source,
                 problems=problems)
    try:
        app.run()
    finally:
        subscription.stop()
        log.info("statspout-top: %s", app.redraw_times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
