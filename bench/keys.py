#!/usr/bin/env python3
"""The `--keys` scenario set (issue 19): what virtual keys and their limits cost, locally and shared.

    /work/venv/bin/python bench/keys.py [--duration 10] [--warmup 2] [--modes local,shared]

Switchboard alone (no LiteLLM, no direct row), non-stream at 64 connections against nginx's instant
upstream, one worker pinned to CPU 0 as run.py does. Two modes:
- `local`: in-process shared state and the SQLite store (the defaults);
- `shared`: PostgreSQL (a fresh schema of `--pg`, dropped afterwards) and Redis (`--redis`, a fresh
  key prefix, deleted afterwards), as a deployment of several instances runs.
In each, one cell per key kind, each on a server of its own with a fresh store: the master key; a
virtual key with no limit; rpm only; a budget only; rpm + tpm + budget. The limits are far above
what the benchmark reaches (an answer refused with 429 is not throughput), and `bench` has a price,
so every answer is charged to the budget.
Reports RPS, p99, the CPU time per request, and in the shared mode the Redis round trips per
request (from `switchboard_shared_state_calls_total`), then the reach of issue 19 with pass/FAIL.
The markdown and the JSON go to bench/results/keys-<time>.{md,json}.

Reuses run.py's pieces (placement, wrk, the nginx upstream, the Switchboard target) by import.
Needs asyncpg and redis in the Python that runs it (`pip install -e '.[test]'`).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cpus
from load import request_body, run_wrk
from report import results_stem, save_results
from run import free_port
from targets import MASTER_KEY, MODELS, Switchboard, check_answers, cpu_seconds
from upstream import Upstream

KEY_KINDS = {  # cell id -> (label, fields of the key; None: the master key)
    "master": ("master key", None),
    "plain": ("virtual key, no limits", {}),
    "rpm": ("virtual key, rpm only", {"rpm": 100_000_000}),
    "budget": ("virtual key, budget only", {"budget_usd": 1_000_000, "budget_period": "monthly"}),
    # tpm below 2**31, so that the commit before the 64-bit migration can be measured on PostgreSQL too.
    "all": ("virtual key, rpm + tpm + budget", {"rpm": 100_000_000, "tpm": 2_000_000_000,
                                                "budget_usd": 1_000_000, "budget_period": "monthly"}),
}
MODES = {"local": "in-process state + SQLite", "shared": "PostgreSQL + Redis"}
CONNECTIONS = 64


class KeysSwitchboard(Switchboard):
    """run.py's Switchboard target with a store, a shared state and a price for `bench`."""

    def __init__(self, workdir: Path, port: int, upstream_url: str, store_url: str, shared_state: str) -> None:
        super().__init__(workdir, port, upstream_url)
        self.store_url = store_url
        self.shared_state = shared_state

    def config_text(self) -> str:
        extra = [f'store: {{url: "{self.store_url}"}}', "prices:", f"  {MODELS['plain']}: {{input: 0.15, output: 0.6}}"]
        if self.shared_state:
            extra.append(self.shared_state)
        return super().config_text() + "\n".join(extra) + "\n"


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _post(port: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json",
                                                      "Authorization": f"Bearer {MASTER_KEY}"})
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status != 201:
            raise RuntimeError(f"POST {path}: {resp.status} {raw[:300]!r}")
        return json.loads(raw)  # type: ignore[no-any-return]
    finally:
        conn.close()


def _round_trips(port: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {MASTER_KEY}"})
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    found = re.search(r"^switchboard_shared_state_calls_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else float("nan")  # nan: a build without the counter


def _sql(url: str, statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def _drop_redis_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def measure_cell(mode: str, kind: str, args: argparse.Namespace, upstream: Upstream, workdir: Path) -> dict[str, Any]:
    """One key kind in one mode, on a server of its own with a fresh store: the usage log that earlier
    cells wrote (a million rows) must not weigh on the later ones."""
    store_url, shared, schema, prefix = "sqlite:///switchboard.db", "", "", ""
    if mode == "shared":
        schema = "sb_bench_" + secrets.token_hex(4)
        _sql(args.pg, f"CREATE SCHEMA {schema}")
        store_url = f"{args.pg}?search_path={schema}"
        prefix = f"sbbench:{secrets.token_hex(4)}:"
        shared = f'shared_state: {{url: "{args.redis}", key_prefix: "{prefix}"}}'
    target = KeysSwitchboard(workdir / f"{mode}-{kind}", free_port(), upstream.url, store_url, shared)
    label, fields = KEY_KINDS[kind]
    target.start()
    try:
        check_answers(target.port, target.chat_path, MODELS)
        assert target.proc is not None
        pid = target.proc.pid
        url = f"http://127.0.0.1:{target.port}{target.chat_path}"
        body = request_body(MODELS["plain"], False)
        secret = MASTER_KEY if fields is None else _post(target.port, "/admin/keys",
                                                           {"name": f"bench-{kind}", **fields})["key"]
        if args.warmup > 0:
            run_wrk(url, body, CONNECTIONS, args.warmup, workdir, f"{mode}-{kind}-warmup", secret,
                    threads=args.threads)
        cpu_before, trips_before = cpu_seconds(pid), _round_trips(target.port) if mode == "shared" else 0.0
        cell = run_wrk(url, body, CONNECTIONS, args.duration, workdir, f"{mode}-{kind}", secret,
                       threads=args.threads)
        result = cell.to_dict()
        if cell.requests:
            result["cpu_us_per_request"] = round((cpu_seconds(pid) - cpu_before) / cell.requests * 1e6, 1)
            if mode == "shared":
                # Scraping /metrics is itself no shared-state call; the two scrapes bracket the cell.
                result["redis_round_trips_per_request"] = round(
                    (_round_trips(target.port) - trips_before) / cell.requests, 4)
    finally:
        target.stop()
        if schema:
            _sql(args.pg, f"DROP SCHEMA {schema} CASCADE")
        if prefix:
            _drop_redis_prefix(args.redis, prefix)
    trips = result.get("redis_round_trips_per_request")
    print(f"  {mode:6} {label:34} {cell.rps:>9,.0f} rps  p99 {cell.p99_ms:7.2f} ms  errors {cell.errors}"
          f"  CPU {result.get('cpu_us_per_request', 0):5.0f} us/req"
          + (f"  Redis {trips:.4f}/req" if trips is not None else ""), flush=True)
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def reach(cells: dict[str, dict[str, Any]]) -> list[tuple[str, float | None, float, bool | None]]:
    """The reach of issue 19: (what, measured ratio, bar, passed)."""
    def rps(mode: str, kind: str) -> float | None:
        cell = cells.get(mode, {}).get(kind)
        return cell["rps"] if cell and not cell["errors"] else None

    def p99(mode: str, kind: str) -> float | None:
        cell = cells.get(mode, {}).get(kind)
        return cell["p99_ms"] if cell else None

    rows: list[tuple[str, float | None, float, bool | None]] = []
    for mode in MODES:
        ratio = _ratio(rps(mode, "all"), rps(mode, "plain"))
        rows.append((f"{MODES[mode]}: rpm + tpm + budget / no-limit key RPS", ratio, 0.80,
                     None if ratio is None else ratio >= 0.80))
    ratio = _ratio(rps("shared", "all"), rps("local", "master"))
    rows.append(("PostgreSQL + Redis rpm + tpm + budget RPS / local master-key RPS", ratio, 0.65,
                 None if ratio is None else ratio >= 0.65))
    ratio = _ratio(p99("shared", "all"), p99("local", "master"))
    rows.append(("PostgreSQL + Redis rpm + tpm + budget p99 / local master-key p99 (at most)", ratio, 1.5,
                 None if ratio is None else ratio <= 1.5))
    return rows


def render(result: dict[str, Any]) -> str:
    cells = result["cells"]
    env = result["environment"]
    lines = [f"# Virtual keys and limits, {result['started']}", "",
             f"Switchboard {result.get('label') or ''} non-stream, {CONNECTIONS} connections, instant upstream, "
             f"{result['duration_s']:g} s per cell after {result['warmup_s']:g} s warm-up; {env['placement']}; "
             f"load {env['loadavg_before']} -> {env['loadavg_after']}.", "",
             "| key used | " + " | ".join(f"{MODES[m]} RPS | p99 ms | CPU us/req" for m in MODES if m in cells)
             + (" | Redis round trips/req |" if "shared" in cells else " |"),
             "|---|" + "---:|---:|---:|" * sum(m in cells for m in MODES) + ("---:|" if "shared" in cells else "")]
    for kind in result["keys"]:
        row = [KEY_KINDS[kind][0]]
        for mode in MODES:
            if mode not in cells:
                continue
            cell = cells[mode].get(kind)
            if cell is None:
                row += ["-", "-", "-"]
                continue
            errors = f" ({cell['errors']} errors)" if cell["errors"] else ""
            row += [f"{cell['rps']:,.0f}{errors}", f"{cell['p99_ms']:.1f}", f"{cell.get('cpu_us_per_request', 0):.0f}"]
        if "shared" in cells:
            trips = cells["shared"].get(kind, {}).get("redis_round_trips_per_request")
            row.append("-" if trips is None or trips != trips else f"{trips:.4f}")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| reach (issue 19) | measured | bar | |", "|---|---:|---:|---|"]
    for what, ratio, bar, passed in reach(cells):
        shown = "-" if ratio is None else f"{ratio:.0%}" if bar < 1 else f"{ratio:.2f}x"
        bar_text = f"{bar:.0%}" if bar < 1 else f"{bar:g}x"
        lines.append(f"| {what} | {shown} | {bar_text} | {'-' if passed is None else 'pass' if passed else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per cell (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of discarded warm-up per cell (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"subset of {','.join(MODES)}")
    parser.add_argument("--keys", default=",".join(KEY_KINDS), help=f"subset of {','.join(KEY_KINDS)}")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="PostgreSQL database for the shared mode (a schema is created in it and dropped)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis for the shared mode")
    parser.add_argument("--label", default="", help="a note for the table's header (e.g. the commit measured)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the gateway to CPU 0 (see run.py)")
    args = parser.parse_args(argv)
    args.keys = [k for k in KEY_KINDS if k in {s.strip() for s in args.keys.split(",")}]
    modes = [m for m in MODES if m in {s.strip() for s in args.modes.split(",")}]

    n_cpus = len(os.sched_getaffinity(0))
    if not args.no_pin and n_cpus >= 2:
        cpus.place({0}, set(range(1, n_cpus)) & os.sched_getaffinity(0) or None)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result: dict[str, Any] = {
        "started": started, "label": args.label, "duration_s": args.duration, "warmup_s": args.warmup,
        "keys": args.keys, "cells": {},
        "environment": {"placement": cpus.describe(), "loadavg_before": _loadavg(), "python": sys.version.split()[0]},
    }
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-bench-keys-"))
    upstream = Upstream(workdir / "nginx", free_port()).start()
    try:
        for mode in modes:
            print(f"{MODES[mode]}:", flush=True)
            result["cells"][mode] = {kind: measure_cell(mode, kind, args, upstream, workdir) for kind in args.keys}
    finally:
        upstream.stop()
        result["environment"]["loadavg_after"] = _loadavg()
        shutil.rmtree(workdir, ignore_errors=True)
    save_results(results_stem("keys-", started), result, render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
