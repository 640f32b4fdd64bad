#!/usr/bin/env python3
"""The transport decision of issue 10: server {ours, uvicorn, granian} x upstream client {ours, aiohttp,
httpx, pyreqwest}, the same Switchboard app in each, on the 50 ms / 256-connection scenarios.

    .venv/bin/python bench/transport_matrix.py [--rounds 3] [--duration 12] [--warmup 2]

Needs nginx + wrk (see README.md) and, in the venv that runs it, `pip install uvicorn granian aiohttp
httpx pyreqwest` (whatever does not import is reported and skipped). For every combination that
installs here, in rounds: start the gateway (one worker process, pinned to CPU 0; wrk and nginx on
CPU 1), check it end to end (a correct completion and a correct stream ending in [DONE], alone and
under concurrency; a combination that fails is reported, not measured), then measure `slow-256`
and `slowsse-256` with wrk and the gateway's CPU time, and stop it. Each round visits every
combination once, in a shuffled order (so drift on the shared machine spreads over all of them);
the table shows medians over the rounds and the spread. CPU us per request is the figure the
decision rule reads: throughput and latency at 50 ms are bounded by the upstream and the machine's
other load; CPU time per request is the gateway's own cost.

Output: progress lines, then the markdown table and the decision (also in bench/results/transports-*.md,
with every run as JSON); `--render FILE.json` re-renders a saved run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cpus
from load import request_body, run_wrk
from report import results_stem, save_results
from run import SCENARIOS, _loadavg, _version, free_port
from targets import MASTER_KEY, MODELS, Switchboard, _request, chat_once, cpu_seconds, rss_kib
from transports import CLIENTS, available
from upstream import _USAGE, _WORDS, Upstream, chat_completion

BENCH = Path(__file__).resolve().parent
SERVERS = ("ours", "uvicorn", "granian")
SCENARIO_IDS = ("slow-256", "slowsse-256")
MARGIN = 0.15  # ours must be at least this much cheaper in CPU per request to stay
EXPECTED_TEXT = "".join(_WORDS)


class Gateway(Switchboard):
    """Switchboard's app (same generated config as run.py's) under `server` with upstream `client`."""

    def __init__(self, workdir: Path, port: int, upstream_url: str, server: str, client: str,
                 extra: tuple[str, ...] = ()) -> None:
        self.name = f"{server}+{client}"
        self.server, self.client = server, client
        self.extra = extra  # more options for the server's command line (--server-args)
        super().__init__(workdir, port, upstream_url, workers=1, log_level="warning")

    def command(self) -> list[str]:
        config = self.workdir / "switchboard.yaml"
        config.write_text(self.config_text())
        port = str(self.port)
        if self.server == "ours":
            return [sys.executable, str(BENCH / "transports.py"), "--client", self.client, "serve",
                    "--config", str(config), "--port", port, "--workers", "1", "--log-level", "warning"]
        if self.server == "uvicorn":
            return [sys.executable, "-m", "uvicorn", "--factory", "transports:app_factory", "--host", "127.0.0.1",
                    "--port", port, "--loop", "uvloop", "--http", "httptools", "--lifespan", "on",
                    "--no-access-log", "--log-level", "warning", "--backlog", "4096", *self.extra]
        if self.server == "granian":
            return [_granian(), "--interface", "asgi", "--factory", "--loop", "uvloop", "--workers", "1",
                    "--http", "1", "--no-ws", "--host", "127.0.0.1", "--port", port, "--log-level", "warning",
                    "--backlog", "4096", *self.extra, "transports:app_factory"]
        raise ValueError(self.server)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH), env.get("PYTHONPATH", "")) if p)
        env["SWITCHBOARD_CONFIG"] = str(self.workdir / "switchboard.yaml")
        env["BENCH_CLIENT"] = self.client
        return env


def _granian() -> str:
    local = Path(sys.executable).parent / "granian"
    return str(local) if local.exists() else (shutil.which("granian") or "granian")


def server_available(server: str) -> str | None:
    module = {"ours": "httptools", "uvicorn": "uvicorn", "granian": "granian"}[server]
    try:
        __import__(module)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# --------------------------------------------------------------------------------------- correctness

def _check_completion(port: int, model: str) -> str | None:
    status, raw, _ = chat_once(port, "/v1/chat/completions", model, False)
    if status != 200:
        return f"{model}: status {status}: {raw[:200]!r}"
    try:
        body = json.loads(raw)
    except ValueError:
        return f"{model}: not JSON: {raw[:200]!r}"
    want = chat_completion()
    if body.get("object") != "chat.completion" or body.get("choices", [{}])[0].get("message", {}).get("content") \
            != EXPECTED_TEXT or body.get("usage") != want["usage"] or body.get("id") != want["id"]:
        return f"{model}: wrong completion: {raw[:300]!r}"
    return None


def _check_stream(port: int, model: str) -> str | None:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "stream_options": {"include_usage": True}}
    status, raw, headers = _request(port, "POST", "/v1/chat/completions", json.dumps(body).encode(), 10.0)
    ctype = headers.get("content-type", "")
    if status != 200 or not ctype.startswith("text/event-stream"):
        return f"{model}: stream status {status} {ctype}: {raw[:200]!r}"
    data = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
    if not data or data[-1] != "[DONE]":
        return f"{model}: stream does not end with [DONE]: {raw[-200:]!r}"
    try:
        chunks = [json.loads(d) for d in data[:-1]]
    except ValueError:
        return f"{model}: stream event is not JSON: {raw[:300]!r}"
    text = "".join(c["choices"][0].get("delta", {}).get("content") or "" for c in chunks if c.get("choices"))
    usage = [c["usage"] for c in chunks if c.get("usage")]
    if text != EXPECTED_TEXT or not usage or usage[-1].get("total_tokens") != _USAGE["total_tokens"]:
        return f"{model}: wrong stream (text {text!r}, usage {usage}): {raw[:300]!r}"
    return None


def verify(port: int) -> str | None:
    """None if the gateway answers correct completions and streams, one by one and 48 at once."""
    for check, kind in ((_check_completion, "plain"), (_check_completion, "slow"),
                        (_check_stream, "sse"), (_check_stream, "slowsse")):
        if (problem := check(port, MODELS[kind])) is not None:
            return problem
    jobs = [(_check_completion if i % 2 else _check_stream, MODELS["slow" if i % 2 else "slowsse"]) for i in range(96)]
    with ThreadPoolExecutor(48) as pool:
        for problem in pool.map(lambda job: job[0](port, job[1]), jobs):
            if problem is not None:
                return f"under concurrency: {problem}"
    return None


# ---------------------------------------------------------------------------------------- measuring

def measure(gw: Gateway, upstream: Upstream, args: argparse.Namespace, workdir: Path, tag: str) -> dict[str, Any]:
    assert gw.proc is not None
    url = f"http://127.0.0.1:{gw.port}/v1/chat/completions"
    out: dict[str, Any] = {}
    for sc in (s for s in SCENARIOS if s.id in args.scenarios):
        body = request_body(MODELS[sc.kind], sc.stream)
        if args.warmup > 0:
            run_wrk(url, body, sc.connections, args.warmup, workdir, f"{tag}-{sc.id}-warmup", MASTER_KEY,
                    threads=args.threads)
        accepted, cpu = upstream.accepted(), cpu_seconds(gw.proc.pid)
        cell = run_wrk(url, body, sc.connections, args.duration, workdir, f"{tag}-{sc.id}", MASTER_KEY,
                       threads=args.threads)
        cpu = cpu_seconds(gw.proc.pid) - cpu
        opened = upstream.accepted() - accepted - 1  # minus the status request itself
        result = cell.to_dict()
        result["cpu_us_per_request"] = round(cpu / cell.requests * 1e6, 1) if cell.requests else None
        result["upstream_connections_opened"] = opened
        out[sc.id] = result
        print(f"    {gw.name:18} {sc.id:12} {cell.rps:8,.0f} rps  p50 {cell.p50_ms:6.1f}  p99 {cell.p99_ms:6.1f} ms  "
              f"CPU {result['cpu_us_per_request'] or 0:6.0f} us/req  errors {cell.errors}  "
              f"upstream conns opened {opened}", flush=True)
    out["rss_mib"] = round(rss_kib(gw.proc.pid) / 1024, 1)
    return out


def run_matrix(args: argparse.Namespace) -> dict[str, Any]:
    n_cpus = len(os.sched_getaffinity(0))
    if not args.no_pin and n_cpus >= 2:
        cpus.place({0}, set(range(1, n_cpus)) & os.sched_getaffinity(0) or None)
    servers = [s for s in args.servers.split(",") if s]
    clients = [c for c in args.clients.split(",") if c]
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds, "seed": args.seed,
        "unavailable": {}, "failed": {}, "runs": [], "orders": [],
        "environment": {
            "cpus": os.cpu_count(), "placement": cpus.describe(), "loadavg_before": _loadavg(),
            "python": sys.version.split()[0],
            "nginx": _version(["nginx", "-v"]).removeprefix("nginx version: nginx/"),
            "wrk": _version(["wrk", "--version"]).split(" [")[0].removeprefix("wrk "),
            "versions": _versions(),
        },
    }
    for s in servers:
        if (why := server_available(s)) is not None:
            result["unavailable"][f"server {s}"] = why
    for c in clients:
        if c not in CLIENTS:
            raise SystemExit(f"unknown client {c}")
        if (why := available(c)) is not None:
            result["unavailable"][f"client {c}"] = why
    combos = [(s, c) for s in servers for c in clients
              if f"server {s}" not in result["unavailable"] and f"client {c}" not in result["unavailable"]]
    for what, why in result["unavailable"].items():
        print(f"skipped: {what} does not import here ({why})", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-transports-"))
    upstream = Upstream(workdir / "nginx", free_port()).start()
    per_visit = 2 * (args.duration + args.warmup) + 4
    print(f"{len(combos)} combinations x {args.rounds} rounds, ~{len(combos) * args.rounds * per_visit / 60:.0f} min; "
          f"{cpus.describe()}; load {_loadavg()}", flush=True)
    try:
        for rnd in range(args.rounds):
            order = [c for c in combos if f"{c[0]}+{c[1]}" not in result["failed"]]
            random.Random(args.seed + rnd).shuffle(order)
            result["orders"].append([f"{s}+{c}" for s, c in order])
            print(f"round {rnd + 1}/{args.rounds} (load {_loadavg()})", flush=True)
            for server, client in order:
                name = f"{server}+{client}"
                gw = Gateway(workdir / f"{name}-{rnd}", free_port(), upstream.url, server, client,
                             tuple(args.server_args.get(server, "").split()))
                try:
                    gw.start()
                except RuntimeError as exc:
                    result["failed"][name] = f"did not start: {exc}: {_tail(gw.log_path)}"
                    print(f"  {name}: FAILED to start: {exc}", flush=True)
                    continue
                try:
                    problem = verify(gw.port)
                    if problem is not None:
                        result["failed"][name] = problem
                        print(f"  {name}: FAILED the end-to-end check, not measured: {problem}", flush=True)
                        continue
                    run = {"round": rnd, "server": server, "client": client,
                           **measure(gw, upstream, args, workdir, f"{name}-{rnd}")}
                    result["runs"].append(run)
                finally:
                    gw.stop()
    finally:
        upstream.stop()
        result["environment"]["loadavg_after"] = _loadavg()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def _tail(path: Path, n: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {}
    for dist in ("switchboard", "uvicorn", "granian", "uvloop", "httptools", "aiohttp", "httpx", "httpcore",
                 "pyreqwest"):
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return found


# ----------------------------------------------------------------------------------------- reporting

def summarise(result: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(server, client, scenario) -> medians and spread over the runs."""
    cells: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for run in result["runs"]:
        for sid in SCENARIO_IDS:
            if sid in run:
                cells.setdefault((run["server"], run["client"], sid), []).append(run[sid])
    out = {}
    for key, runs in cells.items():
        cpu = [r["cpu_us_per_request"] for r in runs if r["cpu_us_per_request"] is not None]
        out[key] = {
            "n": len(runs),
            "rps": statistics.median(r["rps"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "cpu": statistics.median(cpu) if cpu else None,
            "cpu_min": min(cpu) if cpu else None,
            "cpu_max": max(cpu) if cpu else None,
            "errors": sum(r["errors"] for r in runs),
            "opened": statistics.median(r["upstream_connections_opened"] for r in runs),
        }
    return out


def _cheaper(ours: float, theirs: float) -> float:
    """How much cheaper `ours` is than `theirs` (0.15 = 15% less CPU per request; negative: dearer)."""
    return 1 - ours / theirs


def decide(summary: dict[tuple[str, str, str], dict[str, Any]], servers: list[str], clients: list[str]
           ) -> tuple[list[str], dict[str, Any]]:
    """The rule: a well-kept server/client unless ours is >= 15% cheaper in CPU per request than the
    cheapest well-kept one in both 50 ms scenarios. The server is compared with our client (the only
    difference is the server), the client on the server chosen; the other pairings are shown too."""
    lines: list[str] = []
    decision: dict[str, Any] = {}

    def cpu(server: str, client: str, sid: str) -> float | None:
        cell = summary.get((server, client, sid))
        return None if cell is None else cell["cpu"]

    def verdict(kind: str, ours_of: dict[str, float | None], theirs_of: dict[str, dict[str, float | None]]
                ) -> tuple[str, list[str]]:
        """ours_of[sid]; theirs_of[name][sid] -> (winner, explanation lines)."""
        out: list[str] = []
        keep = True
        best_name = None
        for sid in SCENARIO_IDS:
            ours = ours_of.get(sid)
            priced = {n: v[sid] for n, v in theirs_of.items() if v.get(sid) is not None}
            if ours is None or not priced:
                out.append(f"  - {sid}: not enough data")
                keep = False
                continue
            name, theirs = min(priced.items(), key=lambda kv: kv[1])
            best_name = best_name or name
            margin = _cheaper(ours, theirs)
            others = ", ".join(f"{n} {v:,.0f} ({_cheaper(ours, v):+.1%})" for n, v in sorted(priced.items()))
            out.append(f"  - {sid}: ours {ours:,.0f} us/req vs cheapest well-kept {name} {theirs:,.0f}: ours is "
                       f"{margin:+.1%} cheaper (needs >= {MARGIN:.0%}); all: {others}")
            keep = keep and margin >= MARGIN
        if keep:
            return "ours", out
        # The well-kept one to adopt: the cheapest summed over both scenarios.
        totals = {n: sum(v[s] for s in SCENARIO_IDS) for n, v in theirs_of.items()
                  if all(v.get(s) is not None for s in SCENARIO_IDS)}
        return (min(totals, key=lambda n: totals[n]) if totals else best_name or "?"), out

    well_kept_servers = [s for s in servers if s != "ours"]
    well_kept_clients = [c for c in clients if c != "ours"]
    server_rows: dict[str, str] = {}
    for client in clients:
        ours_of = {sid: cpu("ours", client, sid) for sid in SCENARIO_IDS}
        theirs_of = {s: {sid: cpu(s, client, sid) for sid in SCENARIO_IDS} for s in well_kept_servers}
        winner, why = verdict("server", ours_of, theirs_of)
        server_rows[client] = winner
        lines.append(f"- **Server**, with client `{client}`: **{winner}**")
        lines += why
    server = server_rows.get("ours", next(iter(server_rows.values()), "?"))
    decision["server"] = server
    client_rows: dict[str, str] = {}
    for srv in servers:
        ours_of = {sid: cpu(srv, "ours", sid) for sid in SCENARIO_IDS}
        theirs_of = {c: {sid: cpu(srv, c, sid) for sid in SCENARIO_IDS} for c in well_kept_clients}
        winner, why = verdict("client", ours_of, theirs_of)
        client_rows[srv] = winner
        lines.append(f"- **Client**, on server `{srv}`: **{winner}**")
        lines += why
    decision["client"] = client_rows.get(server, "?")
    decision["server_by_client"] = server_rows
    decision["client_by_server"] = client_rows
    lines.insert(0, f"**Decision: server `{decision['server']}`, client `{decision['client']}`** "
                    f"(server judged with our client, client judged on the chosen server; per pairing below)")
    return lines, decision


def render(result: dict[str, Any]) -> str:
    summary = summarise(result)
    servers = list(dict.fromkeys(r["server"] for r in result["runs"])) or list(SERVERS)
    servers.sort(key=SERVERS.index)
    clients = sorted({r["client"] for r in result["runs"]}, key=list(CLIENTS).index)
    env = result["environment"]
    lines = [
        f"### Transport matrix, {result['started'][:10]}",
        "",
        f"`{result['command']}`: {result['rounds']} rounds x {result['duration_s']:g} s measured "
        f"(+{result['warmup_s']:g} s warm-up) per scenario and combination, rounds interleaved in shuffled "
        f"order; one worker process; {env['placement']}; {env['cpus']} CPUs, load {env['loadavg_before']} before, "
        f"{env.get('loadavg_after', '?')} after; Python {env['python']}, nginx {env['nginx']}, wrk {env['wrk']}; "
        + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()) + ".",
        "",
        "**CPU us per request (gateway process, user+system, over the measured window) is the figure to decide "
        "on**: throughput and latency at 50 ms are bounded by the upstream and move with the machine's other load. "
        "Medians over the rounds; `spread` is min-max of the CPU figure; `upstream conns` is the median number "
        "of new upstream connections per measured run (0 = the pool reused its connections).",
        "",
    ]
    for sid in SCENARIO_IDS:
        label = next(s.label for s in SCENARIOS if s.id == sid)
        lines += [f"**{sid}** ({label}, 256 connections)", "",
                  "| server | client | CPU us/req | spread | req/s | p50 ms | p99 ms | errors | upstream conns "
                  "| runs |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for server in servers:
            for client in clients:
                cell = summary.get((server, client, sid))
                if cell is None:
                    continue
                if cell["cpu"] is None:  # no request completed in any run
                    cpu, spread = "-", "-"
                else:
                    cpu, spread = f"**{cell['cpu']:,.0f}**", f"{cell['cpu_min']:,.0f}-{cell['cpu_max']:,.0f}"
                lines.append(f"| {server} | {client} | {cpu} | {spread} | {cell['rps']:,.0f} | {cell['p50_ms']:.1f} | "
                             f"{cell['p99_ms']:.1f} | {cell['errors']} | {cell['opened']:g} | {cell['n']} |")
        lines.append("")
    for what, why in result.get("unavailable", {}).items():
        lines.append(f"- not measured: {what} does not install/import here ({why})")
    for name, why in result.get("failed", {}).items():
        lines.append(f"- **{name} failed the end-to-end check and was not measured**: {why}")
    lines += ["", f"Rule (issue 10): the well-kept server and client unless ours is at least {MARGIN:.0%} "
              "cheaper in CPU per request than the cheapest well-kept one on both 50 ms / 256-connection "
              "scenarios (stream and non-stream).", ""]
    decision_lines, decision = decide(summary, servers, clients)
    result["decision"] = decision
    lines += decision_lines
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all combinations (default 3)")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds measured per scenario (default 12)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of discarded warm-up (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--scenarios", default=",".join(SCENARIO_IDS),
                        help="subset of slow-256,slowsse-256 (the decision needs both)")
    parser.add_argument("--granian-args", default="", help="extra granian options (e.g. '--runtime-mode st')")
    parser.add_argument("--uvicorn-args", default="", help="extra uvicorn options")
    parser.add_argument("--seed", type=int, default=10, help="seed of the per-round shuffles")
    parser.add_argument("--no-pin", action="store_true", help="do not pin (see cpus.py)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, wrk outputs)")
    parser.add_argument("--render", type=Path, metavar="JSON", help="re-render a saved run and exit")
    args = parser.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.server_args = {"granian": args.granian_args, "uvicorn": args.uvicorn_args}
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0
    result = run_matrix(args)
    stem = results_stem("transports-", result["started"])
    save_results(stem, result)  # before rendering: never lose a run
    save_results(stem, result, render(result))  # now with the decision
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
