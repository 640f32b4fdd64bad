#!/usr/bin/env python3
"""The load benchmark of issue 2: upstream direct vs Switchboard vs LiteLLM's proxy, in one run.

    .venv/bin/python bench/run.py [--duration 10] [--warmup 2] [--workers 1] [--count-packages]

Needs `apt-get install -y nginx libnginx-mod-http-echo wrk`; LiteLLM goes into bench/.litellm-venv
(created on first use). Starts nginx (fixed responses; see upstream.py), then each target in turn,
runs every scenario against it with wrk, and prints a markdown table; the JSON and the markdown
are written to bench/results/. Not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cpus
from load import request_body, run_wrk
from packages import count_packages
from report import render, results_stem, save_results
from spy import Profiler
from targets import MASTER_KEY, MODELS, LiteLLM, Switchboard, Target, check_answers, cpu_seconds, ensure_litellm_venv
from upstream import Upstream

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str
    label: str
    kind: str  # upstream kind (upstream.PATHS)
    stream: bool
    connections: int


SCENARIOS = [
    Scenario("plain-16", "non-stream", "plain", False, 16),
    Scenario("plain-64", "non-stream", "plain", False, 64),
    Scenario("sse-16", "stream", "sse", True, 16),
    Scenario("sse-64", "stream", "sse", True, 64),
    Scenario("slow-256", "non-stream, 50 ms upstream", "slow", False, 256),
    Scenario("slowsse-256", "stream, 50 ms upstream", "slowsse", True, 256),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "?"


def run_cells(name: str, scenarios: list[Scenario], url_for: dict[str, str], model_for: dict[str, str],
              args: argparse.Namespace, workdir: Path, api_key: str | None,
              pid: int | None = None) -> dict[str, dict[str, Any]]:
    """Warm up and measure each scenario; with `pid`, also the CPU time that process tree spent per request
    (less sensitive to other load on the machine than throughput)."""
    results: dict[str, dict[str, Any]] = {}
    for sc in scenarios:
        url, body = url_for[sc.kind], request_body(model_for[sc.kind], sc.stream)
        if args.warmup > 0:
            run_wrk(url, body, sc.connections, args.warmup, workdir, f"{name}-{sc.id}-warmup", api_key,
                    threads=args.threads)
        cpu_before = cpu_seconds(pid) if pid is not None else 0.0
        profiler = None
        if pid is not None and name == "switchboard" and sc.id in args.profile:
            profiler = Profiler(pid, args.duration - 1, args.results_prefix.with_name(
                f"{args.results_prefix.name}-profile-{sc.id}.txt"))
        cell = run_wrk(url, body, sc.connections, args.duration, workdir, f"{name}-{sc.id}", api_key,
                       threads=args.threads)
        if profiler is not None:
            summary = profiler.finish()
            profiler.out.with_suffix(".summary.txt").write_text(summary)
            print(f"  py-spy profile of {name} during {sc.id} ({profiler.out}):\n{summary}", flush=True)
        results[sc.id] = cell.to_dict()
        cpu = ""
        if pid is not None and cell.requests:
            per_request_us = (cpu_seconds(pid) - cpu_before) / cell.requests * 1e6
            results[sc.id]["cpu_us_per_request"] = round(per_request_us, 1)
            cpu = f"  CPU {per_request_us:6.0f} us/req"
        print(f"  {name:12} {sc.label:28} c={sc.connections:<4} {cell.rps:>10,.0f} rps  "
              f"p50 {cell.p50_ms:7.2f} ms  p99 {cell.p99_ms:7.2f} ms  errors {cell.errors}{cpu}", flush=True)
    return results


def measure_target(target: Target, scenarios: list[Scenario], args: argparse.Namespace,
                   workdir: Path, cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    print(f"starting {target.name}...", flush=True)
    target.start()
    try:
        print(f"  {target.name} up: /health 200 after {target.health_s:.2f} s, first chat 200 after "
              f"{target.first_200_s:.2f} s, RSS {target.rss_mib():.0f} MiB", flush=True)
        rss_before = round(_rss_mb(target), 1)
        check_answers(target.port, target.chat_path, MODELS)
        url = f"http://127.0.0.1:{target.port}{target.chat_path}"
        measured = run_cells(target.name, scenarios, dict.fromkeys(MODELS, url), MODELS, args, workdir, MASTER_KEY,
                             target.proc.pid if target.proc is not None else None)
        for sid, cell in measured.items():
            cells.setdefault(sid, {})[target.name] = cell
        rss_after = round(_rss_mb(target), 1)
        print(f"  {target.name} RSS after the benchmark: {rss_after:.0f} MB", flush=True)
        return {"health_s": round(target.health_s or 0, 3), "first_200_s": round(target.first_200_s or 0, 3),
                "rss_mb_start": rss_before, "rss_mb_after": rss_after}
    finally:
        target.stop()


def _rss_mb(target: Target) -> float:
    return target.rss_mib() * 1024 * 1024 / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per cell (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of discarded warm-up per cell (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of both gateways (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--targets", default="direct,switchboard,litellm",
                        help="comma-separated subset of direct,switchboard,litellm")
    parser.add_argument("--scenarios", default=",".join(s.id for s in SCENARIOS),
                        help=f"comma-separated subset of {','.join(s.id for s in SCENARIOS)}")
    parser.add_argument("--count-packages", action="store_true",
                        help="also count what `pip install -e .` pulls into a fresh venv (slow: ~1 min)")
    parser.add_argument("--litellm-venv", type=Path, default=BENCH / ".litellm-venv")
    parser.add_argument("--tracing", action="store_true",
                        help="Switchboard exports every request's spans (observability.otlp, sample_ratio 1.0) to an "
                             "OTLP sink of nginx's that discards them (needs the otel extra)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with configs, logs and wrk outputs")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the gateway to CPU 0 and wrk + nginx to the other CPUs (see cpus.py)")
    parser.add_argument("--profile", default="", metavar="SCENARIOS",
                        help="py-spy the Switchboard process during these scenarios (e.g. slow-256); "
                             "adds sampling overhead to those cells")
    args = parser.parse_args(argv)
    args.profile = {p.strip() for p in args.profile.split(",") if p.strip()}

    n_cpus = len(os.sched_getaffinity(0))
    if not args.no_pin and args.workers == 1 and n_cpus >= 2:
        cpus.place({0}, set(range(1, n_cpus)) & os.sched_getaffinity(0) or None)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    wanted = {s.strip() for s in args.scenarios.split(",")}
    scenarios = [s for s in SCENARIOS if s.id in wanted]
    if "litellm" in targets:
        ensure_litellm_venv(args.litellm_venv)
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    stem = results_stem("", started)
    args.results_prefix = stem
    result: dict[str, Any] = {
        "started": started,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "workers": args.workers,
        "tracing": args.tracing,
        "scenarios": [{"id": s.id, "label": s.label, "kind": s.kind, "stream": s.stream,
                       "connections": s.connections} for s in scenarios],
        "cells": {},
        "environment": {
            "cpus": os.cpu_count(),
            "placement": cpus.describe(),
            "loadavg_before": _loadavg(),
            "python": sys.version.split()[0],
            "nginx": _version(["nginx", "-v"]).removeprefix("nginx version: nginx/"),
            "wrk": _version(["wrk", "--version"]).split(" [")[0].removeprefix("wrk "),
        },
    }
    if "litellm" in targets:
        probe = "import importlib.metadata as m; print(m.version('litellm'))"
        result["environment"]["litellm"] = _version([str(args.litellm_venv / "bin" / "python"), "-c", probe])
    upstream = Upstream(workdir / "nginx", free_port()).start()
    try:
        if "direct" in targets:
            print("measuring the upstream directly...", flush=True)
            assert upstream.proc is not None
            with cpus.unpinned(upstream.proc.pid):
                direct = run_cells("direct", scenarios, {k: upstream.base_url(k) + "/chat/completions" for k in MODELS},
                                   dict.fromkeys(MODELS, "gpt-4o-mini"), args, workdir, None)
            for sid, cell in direct.items():
                result["cells"].setdefault(sid, {})["direct"] = cell
        if "switchboard" in targets:
            sb = Switchboard(workdir / "switchboard", free_port(), upstream.url, workers=args.workers,
                             tracing=args.tracing)
            result["switchboard"] = measure_target(sb, scenarios, args, workdir, result["cells"])
        if "litellm" in targets:
            ll = LiteLLM(workdir / "litellm", free_port(), upstream.url, args.litellm_venv, workers=args.workers)
            result["litellm"] = measure_target(ll, scenarios, args, workdir, result["cells"])
    finally:
        upstream.stop()
        result["environment"]["loadavg_after"] = _loadavg()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.count_packages:
        print("counting packages pulled by `pip install -e .` into a fresh venv...", flush=True)
        result["packages"] = count_packages(REPO)

    save_results(stem, result, render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
