"""The REST sink's live page with 2,000 containers: the browser's update time and the sink's CPU.

A real ``statspout-sink rest`` process is fed through the real bus by a synthetic router
(tests/support/feed.py's RouterFeed): ``--hosts`` × ``--per-host`` containers, every one sampled
once a second with changing figures. The sink's CPU is measured over ``--seconds`` twice in the
same run: with no page open (the baseline: taking the samples), then with headless Chromium
showing the page (tests/support/browser.py). From the page: the time from a snapshot's arrival
to the end of the page's code, and to the painted frame (``window.statspoutTimings``), the time
from a click on a column header or a keystroke in the filter to the painted frame, the size of
one snapshot, and (10 s more) the update time with every row drawn ("show all") instead of the
page's first 300. Everything on 127.0.0.1, bounded in count and time. Not a test: prints figures.

    .venv/bin/python bench/web_scale.py [--hosts 20] [--per-host 100] [--seconds 30]
                                        [--screenshot docs/web-view-fleet.png]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from statspout import wire

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.browser import headless_chromium
from support.feed import RouterFeed
from support.ports import free_port
from support.processes import program
from support.waiting import wait_for


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def feed_forever(router: RouterFeed, hosts: int, per_host: int, stop: threading.Event,
                 rounds: list[float]) -> None:
    """Every container's sample once a second, with figures that move; ``rounds`` gets the
    time each full round was sent (to show the feed kept its pace)."""
    tick = 0
    while not stop.is_set():
        started = time.monotonic()
        now = time.time_ns()
        for h in range(hosts):
            for c in range(per_host):
                n = h * per_host + c
                cpu = (n * 7 + tick * 3) % 100 + 0.5
                mem = (20 + n % 300) * 2**20 + (tick % 10) * 2**18
                router.send(wire.ContainerStats(
                    seq=tick * hosts * per_host + n + 1, host=f"node-{h:02d}", id=f"{n:064x}",
                    name=f"svc-{h:02d}-{c:03d}", image="shop/api:2.4.1",
                    labels={"com.docker.compose.project": "shop", "tier": ("web", "db")[n % 2]},
                    timestamp=now, cpu_percent=cpu, cpu_usage_ns=tick * 10**9, online_cpus=4,
                    mem_usage=mem, mem_limit=2**30, mem_percent=mem / 2**30 * 100,
                    rx_bytes=tick * 1000 * (n + 1), tx_bytes=tick * 500, rx_packets=tick,
                    tx_packets=tick, rx_errors=0, tx_errors=0, rx_dropped=0, tx_dropped=0,
                    blk_read_bytes=n * 4096, blk_write_bytes=tick * 8192, pids=1 + n % 20))
        tick += 1
        rounds.append(time.monotonic())
        stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 1),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
            "max": round(ordered[-1], 1), "count": len(ordered)}


TO_SCREEN_JS = """
const [what, done] = [arguments[0], arguments[arguments.length - 1]];
const started = performance.now();
if (what === 'sort') document.querySelector('th[data-key=name]').click();
else { const box = document.getElementById('filter');
       box.value = 'tier=web'; box.dispatchEvent(new Event('input')); }
requestAnimationFrame(() => setTimeout(() => done(performance.now() - started), 0));
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--per-host", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--screenshot", help="save a picture of the page (first rows) here")
    args = parser.parse_args()
    total = args.hosts * args.per_host
    if not (1 <= total <= 5000 and 0 < args.seconds <= 120):
        parser.error("at most 5000 containers and 120 s (a bounded load)")

    router, port, stop = RouterFeed(), free_port(), threading.Event()
    rounds: list[float] = []
    sink = subprocess.Popen([program("statspout-sink"), "rest", "--connect", router.endpoint,
                             "--rest.address", f"127.0.0.1:{port}", "--hwm", "100000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    feeder = threading.Thread(target=feed_forever,
                              args=(router, args.hosts, args.per_host, stop, rounds))
    url = f"http://127.0.0.1:{port}"
    figures: dict = {"containers": total, "hosts": args.hosts, "seconds": args.seconds}
    try:
        router.wait_for_subscriber()
        feeder.start()
        wait_for(lambda: requests.get(url + "/healthz", timeout=5).json()["containers"] == total,
                 60, "every container in the sink")
        before, rounds_before = cpu_seconds(sink.pid), len(rounds)
        time.sleep(args.seconds)
        figures["sink_cpu_no_page_pct"] = round(
            (cpu_seconds(sink.pid) - before) / args.seconds * 100, 1)
        figures["feed_samples_per_s"] = round(
            (len(rounds) - rounds_before) * total / args.seconds)
        with requests.get(url + "/events", stream=True, timeout=5) as events:
            lines = events.iter_lines()
            figures["snapshot_bytes"] = len(next(line for line in lines if line.startswith(
                b"data:")))
        with headless_chromium() as browser:
            browser.get(url + "/")
            wait_for(lambda: f"{total} containers" in browser.find_element(
                "id", "summary").text, 60, "every container on the page")
            browser.execute_script("window.statspoutTimings.script.length = 0;"
                                   "window.statspoutTimings.paint.length = 0;")
            before = cpu_seconds(sink.pid)
            time.sleep(args.seconds)
            figures["sink_cpu_page_pct"] = round(
                (cpu_seconds(sink.pid) - before) / args.seconds * 100, 1)
            figures["rows_drawn"] = browser.execute_script(
                "return document.querySelectorAll('#rows tr').length")
            timings = browser.execute_script("return window.statspoutTimings")
            if args.screenshot:
                browser.save_screenshot(args.screenshot)
            figures["update_script_ms"] = percentiles(timings["script"])
            figures["update_to_screen_ms"] = percentiles(timings["paint"])
            figures["sort_click_to_screen_ms"] = round(
                browser.execute_async_script(TO_SCREEN_JS, "sort"), 1)
            figures["filter_to_screen_ms"] = round(
                browser.execute_async_script(TO_SCREEN_JS, "filter"), 1)
            # Every row drawn ("show all"), for 10 s: what the row limit saves.
            browser.execute_script("const box = document.getElementById('filter');"
                                   "box.value = ''; box.dispatchEvent(new Event('input'));"
                                   "document.getElementById('show-all').click();"
                                   "window.statspoutTimings.script.length = 0;"
                                   "window.statspoutTimings.paint.length = 0;")
            time.sleep(10)
            figures["all_rows_drawn"] = browser.execute_script(
                "return document.querySelectorAll('#rows tr').length")
            timings = browser.execute_script("return window.statspoutTimings")
            figures["all_rows_update_script_ms"] = percentiles(timings["script"])
            figures["all_rows_update_to_screen_ms"] = percentiles(timings["paint"])
    finally:
        stop.set()
        if feeder.is_alive():
            feeder.join(10)
        sink.terminate()
        sink.wait(20)
        router.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
