"""``statspout-router --status``: ask the running router for its counters and print them."""

from __future__ import annotations

import json
from typing import Any

import zmq

from statspout import bus


def query(endpoint: str, timeout_ms: int = 3000) -> dict[str, Any]:
    """The router's status; TimeoutError when no router answers on ``endpoint``."""
    context = zmq.Context()
    try:
        return json.loads(bus.control_request(context, endpoint, b"status", timeout_ms))
    finally:
        context.term()


def format_table(status: dict[str, Any]) -> str:
    """Two small tables: which hosts feed the router (the busiest, as many as the router
    lists, and a line for the rest), and what each route sent."""
    lines = [f"{'HOST':<24} {'IN':>10} {'GAPS':>8} {'MALFORMED':>9} {'RESTARTS':>8} "
             f"{'LAST SEQ':>10} {'AGE S':>7}"]
    for host, c in status["hosts"].items():
        age = "-" if c["seconds_since_last"] is None else f"{c['seconds_since_last']:.1f}"
        last = "-" if c["last_seq"] is None else str(c["last_seq"])
        lines.append(f"{host:<24} {c['messages']:>10} {c['gaps']:>8} {c['malformed']:>9} "
                     f"{c['restarts']:>8} {last:>10} {age:>7}")
    if status["hosts_not_shown"]:
        lines.append(f"({status['hosts_not_shown']} more hosts, with fewer messages)")
    if not status["hosts"]:
        lines.append("(no collector has sent anything yet)")
    lines.append("")
    lines.append(f"{'ROUTE':<24} {'OUT':>10}")
    for route, r in status["routes"].items():
        note = "" if r["active"] else "  (no longer in the routes file)"
        lines.append(f"{route:<24} {r['out']:>10}{note}")
    replay = status.get("replay")
    if replay:
        lines.append("")
        lines.append(f"{'REPLAY BUFFER':<24} {'MESSAGES':>10} {'BYTES':>12} {'OLDEST SEQ':>10} "
                     f"{'EVICTED':>10}")
        for route, b in replay["routes"].items():
            oldest = "-" if b["oldest_seq"] is None else str(b["oldest_seq"])
            lines.append(f"{route:<24} {b['messages']:>10} {b['bytes']:>12} {oldest:>10} "
                         f"{b['evicted']:>10}")
        lines.append(f"run={replay['run_id']} replay requests={replay['requests']} "
                     f"replayed={replay['replayed']} bad_requests={replay['bad_requests']}")
    lines.append("")
    lines.append(
        f"filtered={status['filtered']} malformed={status['malformed']} "
        f"rejected={status['rejected']} internal_errors={status['internal_errors']} "
        f"hosts_over_limit={status['hosts_over_limit']} "
        f"hosts_expired={status['hosts_expired']} "
        f"input_links_dropped={status['input_links_dropped']} reloads={status['reloads']} "
        f"uptime={status['uptime_seconds']:.0f}s"
    )
    return "\n".join(lines)
