#!/usr/bin/env python3
"""What tracing every request costs in CPU time, measured so that a noisy machine cancels out
(issue 17: at most 25 µs per request with `sample_ratio: 1.0`).

    python bench/tracing_cost.py [--kind plain|sse] [--windows 12] [--window-s 2] [--connections 64]

Starts nginx (upstream.py; it is also the OTLP sink, `POST /v1/traces` answered 200) and two
`switchboard serve` processes side by side, one untraced and one tracing every request, both pinned
to the gateway CPU (cpus.py). Then the load (wrk) alternates between them in short windows, ABBA,
and each window's CPU time of the gateway process (/proc) is divided by the requests it served.
A slow spell of the machine (on a shared VM the same cell can read 2x apart an hour later) then
falls on both alike: what is printed is the median of each side and the median of the paired
differences (traced minus untraced), the figure to hold against the goal.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from load import request_body, run_wrk  # noqa: E402
from run import free_port  # noqa: E402
from targets import MASTER_KEY, MODELS, Switchboard, cpu_seconds  # noqa: E402
from upstream import Upstream  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["plain", "sse"], default="plain")
    parser.add_argument("--windows", type=int, default=12, help="load windows per gateway")
    parser.add_argument("--window-s", type=float, default=2.0, help="seconds per window")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="switchboard-tracing-cost-"))
    upstream = Upstream(work / "nginx", free_port()).start()
    gateways: dict[str, Switchboard] = {}
    try:
        for name, tracing in (("off", False), ("on", True)):
            gateways[name] = Switchboard(work / name, free_port(), upstream.url, tracing=tracing).start()
        body = request_body(MODELS[args.kind], args.kind == "sse")
        urls = {name: f"http://127.0.0.1:{g.port}/v1/chat/completions" for name, g in gateways.items()}
        for name, url in urls.items():  # warm-up
            run_wrk(url, body, args.connections, 3, work, f"warmup-{name}", MASTER_KEY)
        samples: dict[str, list[float]] = {name: [] for name in gateways}
        for window in range(args.windows):
            for name in ("off", "on") if window % 2 == 0 else ("on", "off"):
                proc = gateways[name].proc
                assert proc is not None
                before = cpu_seconds(proc.pid)
                cell = run_wrk(urls[name], body, args.connections, args.window_s, work, name, MASTER_KEY)
                if cell.errors or not cell.requests:
                    raise SystemExit(f"bench: {name}: {cell.errors} errors in {cell.requests} requests")
                samples[name].append((cpu_seconds(proc.pid) - before) / cell.requests * 1e6)
        off, on = samples["off"], samples["on"]
        added = statistics.median(b - a for a, b in zip(off, on, strict=True))
        print(f"{args.kind}, {args.connections} connections, {args.windows} windows of {args.window_s:g} s each:")
        print(f"  CPU us per request, median: untraced {statistics.median(off):.1f}, "
              f"traced {statistics.median(on):.1f}")
        print(f"  added by tracing (median of the paired differences): {added:+.1f} us")
        print(f"  windows, untraced: {' '.join(f'{x:.0f}' for x in off)}")
        print(f"  windows, traced:   {' '.join(f'{x:.0f}' for x in on)}")
    finally:
        for gateway in gateways.values():
            gateway.stop()
        upstream.stop()


if __name__ == "__main__":
    main()
