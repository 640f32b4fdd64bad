#!/usr/bin/env python3
"""What tracing every request costs in CPU time, measured so that a noisy machine cancels out
(issue 17: at most 25 µs per request with `sample_ratio: 1.0`).

    python bench/tracing_cost.py [--kind plain|sse] [--windows 12] [--window-s 2] [--connections 64]
                                 [--against <checkout>]

Starts nginx (upstream.py; it is also the OTLP sink, `POST /v1/traces` answered 200) and two
`switchboard serve` processes side by side, one untraced and one tracing every request, both pinned
to the gateway CPU (cpus.py). Then the load (wrk) alternates between them in short windows, ABBA,
and each window's CPU time of the gateway process (/proc) is divided by the requests it served.
A slow spell of the machine (on a shared VM the same cell can read 2x apart an hour later) then
falls on both alike: what is printed is the median of each side and the median of the paired
differences (traced minus untraced), the figure to hold against the goal.

`--against <checkout>` adds a third gateway, traced, running another checkout's code (its `src` on
PYTHONPATH; its C modules, the `ext-modules` of its pyproject.toml, are built in place first with
`cc -O2` where they are missing) in the same rotation: what a change did to tracing's cost,
measured in one run rather than in two runs hours apart. A checkout is made with
`git worktree add /tmp/before <commit>`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from load import request_body, run_wrk  # noqa: E402
from run import free_port  # noqa: E402
from targets import MASTER_KEY, MODELS, Switchboard, cpu_seconds  # noqa: E402
from upstream import Upstream  # noqa: E402


def build_in_place(checkout: Path) -> None:
    """The checkout's C modules (pyproject.toml's ext-modules), compiled next to their sources where
    they are not there yet, so that its `src` on PYTHONPATH runs them and not their Python fallbacks."""
    project = tomllib.loads((checkout / "pyproject.toml").read_text())
    compiler = shutil.which("cc") or shutil.which("gcc")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for ext in project.get("tool", {}).get("setuptools", {}).get("ext-modules", []):
        target = checkout / "src" / (ext["name"].replace(".", "/") + suffix)
        if target.exists():
            continue
        if compiler is None:
            raise SystemExit(f"bench: {target.name} is not built in {checkout} and there is no C compiler")
        subprocess.run([compiler, "-O2", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}",
                        *(str(checkout / source) for source in ext["sources"]), "-o", str(target)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["plain", "sse"], default="plain")
    parser.add_argument("--windows", type=int, default=12, help="load windows per gateway")
    parser.add_argument("--window-s", type=float, default=2.0, help="seconds per window")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--against", type=Path, help="another checkout, traced too (see above)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="switchboard-tracing-cost-"))
    upstream = Upstream(work / "nginx", free_port()).start()
    gateways: dict[str, Switchboard] = {}
    try:
        sides = [("off", False, None), ("on", True, None)]
        if args.against is not None:
            build_in_place(args.against.resolve())
            sides.append(("against", True, args.against.resolve() / "src"))
        inherited = os.environ.get("PYTHONPATH")
        for name, tracing, src in sides:
            if src is not None:  # the child's environment is read at its start (targets.Target.env)
                os.environ["PYTHONPATH"] = str(src)
            elif inherited is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = inherited
            gateways[name] = Switchboard(work / name, free_port(), upstream.url, tracing=tracing).start()
        if inherited is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = inherited
        body = request_body(MODELS[args.kind], args.kind == "sse")
        urls = {name: f"http://127.0.0.1:{g.port}/v1/chat/completions" for name, g in gateways.items()}
        for name, url in urls.items():  # warm-up
            run_wrk(url, body, args.connections, 3, work, f"warmup-{name}", MASTER_KEY)
        samples: dict[str, list[float]] = {name: [] for name in gateways}
        names = list(gateways)
        for window in range(args.windows):
            for name in names if window % 2 == 0 else names[::-1]:
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
        if "against" in samples:
            other = samples["against"]
            print(f"  {args.against}, traced: {statistics.median(other):.1f} us per request, "
                  f"{statistics.median(b - a for a, b in zip(off, other, strict=True)):+.1f} us over untraced; "
                  f"this checkout minus it: {statistics.median(b - a for a, b in zip(other, on, strict=True)):+.1f} us")
            print(f"  windows, {args.against}: {' '.join(f'{x:.0f}' for x in other)}")
    finally:
        for gateway in gateways.values():
            gateway.stop()
        upstream.stop()


if __name__ == "__main__":
    main()
