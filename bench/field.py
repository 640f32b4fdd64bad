#!/usr/bin/env python3
"""Performance the field's way (issue 14): added latency at concurrency 1, streams sustained, memory
over time, the throughput frontier; direct, Switchboard and LiteLLM in one run.

    python bench/field.py [--soak 60] [--settle 60] [--targets direct,switchboard,litellm]

Reuses run.py's pieces: nginx (upstream.py, with its paced `/paced/v1` stream), wrk (load.py), the
gateways (targets.py) and the CPU placement (cpus.py: the gateway on CPU 0, nginx + the load on the
others). The stream driver is `streams.js` (Node's built-in http; system Node 20 is enough). Sections,
per target, in this order:

- **latency**: wrk -c1 -t1 for `--latency-duration` seconds per lane (after a warm-up): non-stream
  and stream chat, and the Anthropic-ingress lane (`POST /v1/messages` with an Anthropic body, routed
  to the OpenAI-format nginx; its direct is the same chat request straight to nginx). Added = the
  gateway's p50/p99 minus direct's.
- **ratios**: run.py's `slow-256` / `slowsse-256` (50 ms upstream, 256 connections): req/s vs direct
  and the gateway's CPU time per request.
- **streams**: streams.js at concurrency 1 (added time to first token and inter-frame gap), then at
  each of `--stream-levels`; a level is *sustained* when every stream that ended had all 64 deltas in
  order with `[DONE]`, fewer than 0.1 % failed, no gap exceeded 200 ms, and (ours) the p99 time to first
  token stayed under 1 s (streams queued for seconds before they start are not carried). Direct also runs at twice
  the highest level (the driver's ceiling probe); a gateway level whose frames/s is within 10 % of the
  driver's best frames/s against nginx is flagged (the driver, not the gateway, may be the limit).
- **frontier**: one non-stream sweep of wrk concurrency 1 -> 512; the most req/s with p99 under 1, 5,
  10, 50 ms and no failed request.
- **memory** (gateways): idle RSS after /health and before the first request; RSS sampled every second
  during `--soak` seconds of a fixed load (wrk, 64 connections, stream and non-stream alternating);
  steady = the median sample, growth = least-squares slope over the soak after its first 10 % (and,
  to tell a warm-up from a leak, over its second half), in
  MiB/min; and RSS `--settle` seconds after the load stops.

Prints progress, then markdown (the sections and issue 14's Reach table with pass/FAIL); JSON and
markdown go to bench/results/field-<time>.*. Not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import cpus  # noqa: E402
from field_report import FRONTIER_BOUNDS_MS, LANES, frontier_best, is_sustained, render, rss_slope  # noqa: E402
from load import request_body, run_wrk  # noqa: E402
from report import results_stem, save_results  # noqa: E402
from run import SCENARIOS, free_port, run_cells  # noqa: E402
from targets import MASTER_KEY, MODELS, LiteLLM, Switchboard, Target, _request, check_answers, cpu_seconds, rss_kib  # noqa: E402
from upstream import PACED_DELTAS, PATHS, Upstream  # noqa: E402

GAP_LIMIT_MS = 200
FAIL_SHARE = 0.001
FRONTIER_LEVELS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


def anthropic_body(model: str, stream: bool) -> str:
    """load.request_body's chat request in the Anthropic Messages format."""
    body: dict[str, object] = {"model": model, "system": "You are a helpful assistant.",
                               "messages": [{"role": "user", "content": "Hello! Please say hello back."}],
                               "max_tokens": 64, "temperature": 0.7}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":"))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---- latency at concurrency 1 -------------------------------------------------------------------

def check_anthropic(port: int) -> None:
    for stream in (False, True):
        model = MODELS["sse" if stream else "plain"]
        status, raw, _ = _request(port, "POST", "/v1/messages", anthropic_body(model, stream).encode(), 10)
        ok = status == 200 and (b"message_stop" in raw if stream else json.loads(raw).get("type") == "message")
        if not ok:
            raise RuntimeError(f"/v1/messages check failed on :{port} (stream={stream}): {status} {raw[:300]!r}")


def latency(name: str, base: str, direct: bool, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for lane, (label, kind, stream, anthropic) in LANES.items():
        if direct:
            url, body, key = f"{base}{PATHS[kind]}/chat/completions", request_body("gpt-4o-mini", stream), None
        elif anthropic:
            url, body, key = f"{base}/v1/messages", anthropic_body(MODELS[kind], stream), MASTER_KEY
        else:
            url, body, key = f"{base}/v1/chat/completions", request_body(MODELS[kind], stream), MASTER_KEY
        if direct and anthropic:  # the same chat request straight to nginx as the chat lanes: reuse them
            out[lane] = out["chat-stream" if stream else "chat"]
            continue
        run_wrk(url, body, 1, args.warmup, workdir, f"{name}-c1-{lane}-warmup", key, threads=1)
        cell = run_wrk(url, body, 1, args.latency_duration, workdir, f"{name}-c1-{lane}", key, threads=1)
        out[lane] = cell.to_dict()
        print(f"  {name:12} c=1 {label:32} p50 {cell.p50_ms:6.2f} ms  p99 {cell.p99_ms:6.2f} ms  "
              f"({cell.requests} requests, errors {cell.errors})", flush=True)
    return out


# ---- streams sustained ----------------------------------------------------------------------------

def drive_streams(url: str, model: str, key: str | None, concurrency: int, duration_s: float) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("bench: the stream driver needs Node.js (apt-get install -y nodejs)")
    cfg = {"url": url, "concurrency": concurrency, "duration_s": duration_s, "model": model, "key": key,
           "deltas": PACED_DELTAS, "gap_limit_ms": GAP_LIMIT_MS}
    proc = subprocess.run([node, str(BENCH / "streams.js"), json.dumps(cfg)], capture_output=True, text=True,
                          timeout=duration_s + 120, preexec_fn=cpus.for_load())
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"streams.js failed ({proc.returncode}): {proc.stderr[-2000:]}")
    raw = json.loads(proc.stdout.strip().splitlines()[-1])
    gaps, ttft = raw.pop("gap_us"), raw.pop("ttft_us")
    raw.update(concurrency=concurrency,
               ttft_p50_ms=pct(ttft, 50) / 1000, ttft_p99_ms=pct(ttft, 99) / 1000,
               gap_p50_ms=pct(gaps, 50) / 1000, gap_p99_ms=pct(gaps, 99) / 1000,
               max_gap_ms=raw["max_gap_us"] / 1000)
    raw["fail_share"] = raw["failed"] / raw["streams"] if raw["streams"] else 1.0
    # the conditions; field_report.is_sustained adds TTFT p99 <= 1 s (not queued before the first token)
    raw["sustained"] = bool(raw["streams"] and raw["fail_share"] < FAIL_SHARE and raw["max_gap_ms"] <= GAP_LIMIT_MS
                            and raw["ok"] > 0)
    return raw


def streams(name: str, url: str, model: str, key: str | None, levels: list[int],
            args: argparse.Namespace, pid: int | None = None) -> dict[str, Any]:
    """The stream driver at c=1, then at each level; with the gateway's `pid`, each run also records
    the gateway's CPU time per content frame delivered (`gateway_cpu_us_per_frame`)."""
    out: dict[str, Any] = {"levels": []}

    def run(level: int, duration_s: float) -> dict[str, Any]:
        before = cpu_seconds(pid) if pid is not None else 0.0
        r = drive_streams(url, model, key, level, duration_s)
        if pid is not None and r["frames"]:
            r["gateway_cpu_us_per_frame"] = (cpu_seconds(pid) - before) / r["frames"] * 1e6
        return r

    one = run(1, args.stream_c1_duration)
    out["c1"] = one
    print(f"  {name:12} streams c=1: TTFT p50 {one['ttft_p50_ms']:.2f} ms p99 {one['ttft_p99_ms']:.2f} ms, "
          f"gap p50 {one['gap_p50_ms']:.2f} ms p99 {one['gap_p99_ms']:.2f} ms", flush=True)
    for level in levels:
        r = run(level, args.stream_duration)
        out["levels"].append(r)
        print(f"  {name:12} streams c={level:<5} {r['ok']:>6} ok {r['failed']:>5} failed {r['failures']} "
              f"frames/s {r['frames_per_s']:>8,.0f}  gap p50 {r['gap_p50_ms']:6.2f} p99 {r['gap_p99_ms']:7.2f} "
              f"max {r['max_gap_ms']:7.1f} ms  TTFT p99 {r['ttft_p99_ms']:7.1f} ms  driver CPU "
              f"{r['driver_cpu_share']:.0%}  {'sustained' if is_sustained(r) else 'NOT sustained'}", flush=True)
        if not is_sustained(r) and not args.full_sweep:
            break
    return out


# ---- memory -------------------------------------------------------------------------------------

_MIXED_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
local bodies = {{ [==[{plain}]==], [==[{stream}]==] }}
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[i % 2 + 1])
end
"""


def memory(target: Target, idle_kib: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    assert target.proc is not None
    pid = target.proc.pid
    script = workdir / f"{target.name}-soak.lua"
    script.write_text(_MIXED_LUA.format(key=MASTER_KEY, plain=request_body(MODELS["plain"], False),
                                        stream=request_body(MODELS["sse"], True)))
    url = f"http://127.0.0.1:{target.port}{target.chat_path}"
    wrk = subprocess.Popen([shutil.which("wrk") or "wrk", "-t2", f"-c{args.soak_connections}",
                            f"-d{args.soak:g}s", "--timeout=10s", "-s", str(script), url],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=cpus.for_load())
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    while wrk.poll() is None:
        samples.append((time.monotonic() - started, rss_kib(pid) / 1024))
        time.sleep(1.0)
    wrk_out = wrk.stdout.read() if wrk.stdout else ""
    (workdir / f"{target.name}-soak.wrk.txt").write_text(wrk_out)
    steady = statistics.median(s[1] for s in samples)
    slope = rss_slope(samples, args.soak * 0.1)
    print(f"  {target.name:12} soak {args.soak:g} s: steady RSS {steady:.1f} MiB, growth {slope:+.2f} MiB/min; "
          f"waiting {args.settle:g} s...", flush=True)
    time.sleep(args.settle)
    after = rss_kib(pid) / 1024
    print(f"  {target.name:12} RSS {args.settle:g} s after the load: {after:.1f} MiB", flush=True)
    requests = next((ln.split()[0] for ln in wrk_out.splitlines() if "requests in" in ln), "?")
    return {"idle_mib": round(idle_kib / 1024, 1), "steady_mib": round(steady, 1),
            "growth_mib_per_min": round(slope, 3), "after_mib": round(after, 1), "soak_s": args.soak,
            "settle_s": args.settle, "soak_requests": requests,
            "samples": [(round(t, 1), round(m, 1)) for t, m in samples]}


def start_idle(target: Target, timeout: float = 120.0) -> int:
    """Start `target` like Target.start, but read its RSS after /health and before the first request."""
    target.workdir.mkdir(parents=True, exist_ok=True)
    with open(target.log_path, "wb") as log:
        target.proc = subprocess.Popen(target.command(), cwd=target.workdir, env=target.env(), stdout=log,
                                       stderr=subprocess.STDOUT, preexec_fn=cpus.for_gateway())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if target.proc.poll() is not None:
            raise RuntimeError(f"{target.name} exited early; see {target.log_path}")
        try:
            if _request(target.port, "GET", target.health_path, timeout=1.0)[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.02)
    else:
        target.stop()
        raise RuntimeError(f"{target.name} did not answer /health within {timeout}s")
    time.sleep(1.0)  # let start-up work that runs after the listener opens finish
    return rss_kib(target.proc.pid)


# ---- frontier -----------------------------------------------------------------------------------

def frontier(name: str, url: str, model: str, key: str | None, args: argparse.Namespace,
             workdir: Path) -> dict[str, Any]:
    sweep = []
    for c in FRONTIER_LEVELS:
        body = request_body(model, False)
        run_wrk(url, body, c, 1, workdir, f"{name}-f{c}-warmup", key, threads=min(2, c))
        cell = run_wrk(url, body, c, args.frontier_duration, workdir, f"{name}-f{c}", key, threads=min(2, c))
        sweep.append({"connections": c, **cell.to_dict()})
    best = frontier_best(sweep, FRONTIER_BOUNDS_MS)
    print(f"  {name:12} frontier: " + ", ".join(
        f"p99<{b} ms: {v['rps']:,.0f} req/s @c{v['connections']}" if v else f"p99<{b} ms: none"
        for b, v in best.items()), flush=True)
    return {"sweep": sweep, "best": best}


# ---- the run ------------------------------------------------------------------------------------

def measure_gateway(target: Target, upstream: Upstream, args: argparse.Namespace, workdir: Path,
                    sections: set[str]) -> dict[str, Any]:
    print(f"starting {target.name}...", flush=True)
    idle = start_idle(target)
    out: dict[str, Any] = {}
    try:
        assert target.proc is not None
        pid = target.proc.pid
        check_answers(target.port, target.chat_path, MODELS)
        base = f"http://127.0.0.1:{target.port}"
        url = base + target.chat_path
        if "latency" in sections:
            check_anthropic(target.port)
            out["latency"] = latency(target.name, base, False, args, workdir)
        if "ratios" in sections:
            out["ratios"] = run_cells(target.name, RATIO_SCENARIOS, dict.fromkeys(MODELS, url), MODELS, args,
                                      workdir, MASTER_KEY, pid)
        if "streams" in sections:
            out["streams"] = streams(target.name, url, MODELS["paced"], MASTER_KEY, args.levels, args, pid)
        if "frontier" in sections:
            out["frontier"] = frontier(target.name, url, MODELS["plain"], MASTER_KEY, args, workdir)
        if "memory" in sections:
            out["memory"] = memory(target, idle, args, workdir)
        out["cpu_s_total"] = round(cpu_seconds(pid), 2)
    finally:
        target.stop()
    return out


RATIO_SCENARIOS = [s for s in SCENARIOS if s.id in ("slow-256", "slowsse-256")]


def measure_direct(upstream: Upstream, args: argparse.Namespace, workdir: Path, sections: set[str]) -> dict[str, Any]:
    print("measuring the upstream directly...", flush=True)
    out: dict[str, Any] = {}
    if "latency" in sections:
        out["latency"] = latency("direct", upstream.url, True, args, workdir)
    if "ratios" in sections:
        assert upstream.proc is not None
        with cpus.unpinned(upstream.proc.pid):  # as run.py: nginx and wrk alone get every CPU
            out["ratios"] = run_cells("direct", RATIO_SCENARIOS,
                                      {k: upstream.base_url(k) + "/chat/completions" for k in MODELS},
                                      dict.fromkeys(MODELS, "gpt-4o-mini"), args, workdir, None)
    if "streams" in sections:
        url = upstream.base_url("paced") + "/chat/completions"
        out["streams"] = streams("direct", url, "gpt-4o-mini", None, args.levels, args)
        probe = drive_streams(url, "gpt-4o-mini", None, 2 * max(args.levels), args.stream_duration)
        out["streams"]["ceiling_probe"] = probe
        print(f"  direct       driver ceiling probe c={probe['concurrency']}: {probe['frames_per_s']:,.0f} frames/s, "
              f"{probe['failed']} failed, max gap {probe['max_gap_ms']:.1f} ms, driver CPU "
              f"{probe['driver_cpu_share']:.0%}", flush=True)
    if "frontier" in sections:
        out["frontier"] = frontier("direct", upstream.base_url("plain") + "/chat/completions", "gpt-4o-mini",
                                   None, args, workdir)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="direct,switchboard,litellm")
    parser.add_argument("--sections", default="latency,ratios,streams,frontier,memory")
    parser.add_argument("--latency-duration", type=float, default=10.0, help="seconds per c=1 lane (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per wrk cell (default 2)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per 256-connection ratio cell")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads of the ratio cells")
    parser.add_argument("--stream-levels", default="100,250,500,1000")
    parser.add_argument("--stream-duration", type=float, default=8.0, help="seconds of new streams per level")
    parser.add_argument("--stream-c1-duration", type=float, default=8.0)
    parser.add_argument("--full-sweep", action="store_true", help="run every stream level even after one failed")
    parser.add_argument("--frontier-duration", type=float, default=4.0)
    parser.add_argument("--soak", type=float, default=60.0, help="seconds of fixed load for the memory figures "
                        "(issue 14's goal is for 600)")
    parser.add_argument("--soak-connections", type=int, default=64)
    parser.add_argument("--settle", type=float, default=60.0, help="seconds after the soak before the last RSS")
    parser.add_argument("--litellm-venv", type=Path, default=BENCH / ".litellm-venv")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    args.levels = [int(x) for x in args.stream_levels.split(",") if x.strip()]
    args.profile = set()
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    notes: list[str] = []
    if "litellm" in targets and not (args.litellm_venv / "bin" / "litellm").exists():
        targets.remove("litellm")
        notes.append(f"LiteLLM not measured: no venv at {args.litellm_venv} "
                     "(create it with `python -m venv bench/.litellm-venv && bench/.litellm-venv/bin/pip install "
                     "'litellm[proxy]'`, or run bench/run.py once)")
        print(notes[-1], flush=True)
    n_cpus = len(os.sched_getaffinity(0))
    if not args.no_pin and n_cpus >= 2:
        cpus.place({0}, set(range(1, n_cpus)) & os.sched_getaffinity(0) or None)

    workdir = Path(tempfile.mkdtemp(prefix="switchboard-field-"))
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result: dict[str, Any] = {"started": started, "placement": cpus.describe(), "loadavg_before": _loadavg(),
                              "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                                       if k != "profile"},
                              "notes": notes, "targets": {}}
    upstream = Upstream(workdir / "nginx", free_port()).start()
    measures: dict[str, Callable[[], dict[str, Any]]] = {
        "direct": lambda: measure_direct(upstream, args, workdir, sections),
        "switchboard": lambda: measure_gateway(Switchboard(workdir / "switchboard", free_port(), upstream.url),
                                               upstream, args, workdir, sections),
        "litellm": lambda: measure_gateway(LiteLLM(workdir / "litellm", free_port(), upstream.url, args.litellm_venv),
                                           upstream, args, workdir, sections),
    }
    try:
        for name in (t for t in measures if t in targets):
            try:
                result["targets"][name] = measures[name]()
            except Exception as exc:  # one target failing does not lose what the others measured
                notes.append(f"{name} not measured: {type(exc).__name__}: {exc}"[:600])
                print(notes[-1], flush=True)
    finally:
        upstream.stop()
        result["loadavg_after"] = _loadavg()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    stem = results_stem("field-", started)
    save_results(stem, result)  # (the numbers first: a report that fails to render loses none of them)
    save_results(stem, result, render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
