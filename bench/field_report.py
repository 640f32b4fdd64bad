"""Markdown for a bench/field.py run: the sections and issue 14's Reach table with pass/FAIL.

    python bench/field_report.py bench/results/field-<time>.json     # re-render a saved run
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

__all__ = ["FRONTIER_BOUNDS_MS", "LANES", "frontier_best", "render", "rss_slope"]

# The c=1 lanes: id -> (label, upstream kind, stream, Anthropic ingress); field.py runs them.
LANES = {
    "chat": ("non-stream", "plain", False, False),
    "chat-stream": ("stream", "sse", True, False),
    "messages": ("Anthropic ingress, non-stream", "plain", False, True),
    "messages-stream": ("Anthropic ingress, stream", "sse", True, True),
}
FRONTIER_BOUNDS_MS = [1, 5, 10, 50]  # the frontier's p99 bounds

DRIVER_MARGIN = 0.10
TTFT_LIMIT_MS = 1000  # ours, beyond the three conditions: streams queued before their first token are
                      # not "carried" (a gateway that accepts 1,000 but starts them seconds late passes otherwise)


def is_sustained(r: dict[str, Any]) -> bool:
    return bool(r["sustained"]) and r["ttft_p99_ms"] <= TTFT_LIMIT_MS


def _f(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _gateways(result: dict[str, Any]) -> list[str]:
    return [t for t in result["targets"] if t != "direct"]


def _added_latency(result: dict[str, Any], gw: str, lane: str, key: str) -> float | None:
    try:
        gateway, direct = result["targets"][gw]["latency"][lane], result["targets"]["direct"]["latency"][lane]
        return float(gateway[key] - direct[key])
    except KeyError:
        return None


def _latency_table(result: dict[str, Any]) -> list[str]:
    lines = ["| lane | direct p50 / p99 ms | " + " | ".join(f"{g} p50 / p99 ms | {g} added p50 / p99 ms"
                                                             for g in _gateways(result)) + " |",
             "|---|---:|" + "---:|---:|" * len(_gateways(result))]
    direct = result["targets"].get("direct", {}).get("latency", {})
    for lane, (label, *_rest) in LANES.items():
        d = direct.get(lane)
        row = f"| {label} | {_f(d and d['p50_ms'])} / {_f(d and d['p99_ms'])} |"
        for g in _gateways(result):
            c = result["targets"][g].get("latency", {}).get(lane)
            added50, added99 = _added_latency(result, g, lane, "p50_ms"), _added_latency(result, g, lane, "p99_ms")
            row += f" {_f(c and c['p50_ms'])} / {_f(c and c['p99_ms'])} | {_f(added50)} / {_f(added99)} |"
        lines.append(row)
    return lines


def driver_ceiling(result: dict[str, Any]) -> float | None:
    s = result["targets"].get("direct", {}).get("streams")
    if not s:
        return None
    runs = s["levels"] + [s.get("ceiling_probe")]
    return max((r["frames_per_s"] for r in runs if r), default=None)  # what the driver delivered, gaps or not


def sustained(result: dict[str, Any], target: str) -> dict[str, Any] | None:
    s = result["targets"].get(target, {}).get("streams")
    if not s:
        return None
    ok = [r for r in s["levels"] if is_sustained(r)]
    return max(ok, key=lambda r: r["concurrency"]) if ok else None


def _streams_table(result: dict[str, Any]) -> list[str]:
    ceiling = driver_ceiling(result)
    direct_runs = result["targets"].get("direct", {}).get("streams", {}).get("levels", [])
    failed_at = [r["concurrency"] for r in direct_runs if not is_sustained(r)]
    # from the first level nginx + the driver did not sustain themselves, a gateway failing says nothing
    first_failed = min(failed_at, default=None)
    lines = ["| target | concurrency | streams ok / failed | frames/s | gap p50 / p99 / max ms | TTFT p50 / p99 ms "
             "| driver CPU | gateway CPU µs/frame | sustained |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for t, data in result["targets"].items():
        s = data.get("streams")
        if not s:
            continue
        runs = [s["c1"], *s["levels"]] + ([s["ceiling_probe"]] if "ceiling_probe" in s else [])
        for r in runs:
            flag = ""
            if t != "direct" and ceiling and r["frames_per_s"] >= (1 - DRIVER_MARGIN) * ceiling:
                flag = " (within 10 % of the driver's ceiling)"
            if t != "direct" and not is_sustained(r) and first_failed is not None and r["concurrency"] >= first_failed:
                flag += " (direct not sustained at this level either: the rig is the limit)"
            probe = " (driver ceiling probe)" if r is s.get("ceiling_probe") else ""
            fails = f" {r['failures']}" if r["failures"] else ""
            lines.append(f"| {t}{probe} | {r['concurrency']} | {r['ok']:,} / {r['failed']:,}{fails} "
                         f"| {r['frames_per_s']:,.0f} | {r['gap_p50_ms']:.2f} / {r['gap_p99_ms']:.2f} / "
                         f"{r['max_gap_ms']:.1f} | {r['ttft_p50_ms']:.2f} / {r['ttft_p99_ms']:.2f} "
                         f"| {r['driver_cpu_share']:.0%} | {_us(r.get('gateway_cpu_us_per_frame'))} "
                         f"| {'yes' if is_sustained(r) else 'no'}{flag} |")
    if ceiling:
        lines.append("")
        lines.append(f"Driver ceiling (most frames/s it took from nginx directly, any level): {ceiling:,.0f}.")
    return lines


def _added_streams(result: dict[str, Any], gw: str) -> dict[str, float] | None:
    try:
        d, g = result["targets"]["direct"]["streams"]["c1"], result["targets"][gw]["streams"]["c1"]
    except KeyError:
        return None
    return {k: g[k] - d[k] for k in ("ttft_p50_ms", "ttft_p99_ms", "gap_p50_ms", "gap_p99_ms")}


def _ratio(result: dict[str, Any], gw: str, sid: str) -> float | None:
    try:
        return float(result["targets"][gw]["ratios"][sid]["rps"] / result["targets"]["direct"]["ratios"][sid]["rps"])
    except (KeyError, ZeroDivisionError):
        return None


def frontier_best(sweep: list[dict[str, Any]], bounds_ms: list[int]) -> dict[str, dict[str, Any] | None]:
    """Per p99 bound (ms, as a str key): the sweep's cell with the most req/s, no failed request and p99
    under it; None for none. A cell in which no request finished (a gateway queueing every one past the
    cell's seconds) has no latency to speak of: its p99 of 0 is not "under 1 ms"."""
    best: dict[str, dict[str, Any] | None] = {}
    for bound in bounds_ms:
        ok = [s for s in sweep if s["errors"] == 0 and s.get("requests", 1) > 0 and s["p99_ms"] < bound]
        best[str(bound)] = max(ok, key=lambda s: s["rps"]) if ok else None
    return best


def _frontier_table(result: dict[str, Any]) -> list[str]:
    names = [t for t, d in result["targets"].items() if "frontier" in d]
    if not names:
        return []
    lines = ["| p99 under | " + " | ".join(f"{t} req/s (connections)" for t in names) + " |",
             "|---|" + "---:|" * len(names)]
    bests = {t: frontier_best(result["targets"][t]["frontier"]["sweep"], FRONTIER_BOUNDS_MS)  # (today's rule)
             for t in names}
    for b in FRONTIER_BOUNDS_MS:
        cells = []
        for t in names:
            best = bests[t][str(b)]
            cells.append(f"{best['rps']:,.0f} ({best['connections']})" if best else "none")
        lines.append(f"| {b} ms | " + " | ".join(cells) + " |")
    lines += ["", "The sweep (req/s, p99 ms, errors):", "",
              "| connections | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    sweeps = {t: {s["connections"]: s for s in result["targets"][t]["frontier"]["sweep"]} for t in names}
    for c in sorted({c for s in sweeps.values() for c in s}):
        cells = []
        for t in names:
            s = sweeps[t].get(c)
            cells.append(f"{s['rps']:,.0f} / {s['p99_ms']:.2f} / {s['errors']}" if s else "-")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines


def _mark(ok: bool | None) -> str:
    return "not measured" if ok is None else ("pass" if ok else "FAIL")


def reach(result: dict[str, Any], gw: str) -> list[tuple[str, str, str, bool | None]]:
    """(measure, measured, goal, ok) rows of issue 14's Reach table for one gateway."""
    rows: list[tuple[str, str, str, bool | None]] = []
    for lane, label, goal in (("chat", "non-stream", 0.5), ("chat-stream", "stream", 0.7)):
        v = _added_latency(result, gw, lane, "p99_ms")
        rows.append((f"added p99 at concurrency 1, {label}", "-" if v is None else f"{v:.2f} ms", f"≤ {goal} ms",
                     None if v is None else v <= goal))
    top = result["targets"].get(gw, {}).get("streams")
    if top:
        best = sustained(result, gw)
        tried = max(r["concurrency"] for r in top["levels"])
        text = (f"{best['concurrency']:,} concurrent ({best['frames_per_s']:,.0f} frames/s)" if best
                else "none of the levels") + f"; highest level tried {tried:,}"
        ok: bool | None = bool(best and best["concurrency"] >= 1000)
        rig = sustained(result, "direct")
        if not ok and "direct" in result["targets"] and (rig is None or (
                rig["concurrency"] < 1000 and best is not None and best["concurrency"] >= rig["concurrency"])):
            # nginx + the driver did not sustain 1,000 streams themselves, and the gateway carried all they
            # did: this machine cannot tell (a gateway that fell short of direct's level is judged: FAIL)
            ok = None
            text += (f"; direct itself sustained only {rig['concurrency'] if rig else 0:,}, so the rig is the "
                     "limit here")
        rows.append(("streams sustained (64 frames at 20 ms)", text, "≥ 1,000 concurrent, zero frames lost", ok))
    else:
        rows.append(("streams sustained (64 frames at 20 ms)", "-", "≥ 1,000 concurrent, zero frames lost", None))
    r = _ratio(result, gw, "slowsse-256")
    rows.append(("50 ms upstream, 256 connections, stream vs direct", "-" if r is None else f"{r:.0%}", "≥ 90%",
                 None if r is None else r >= 0.90))
    cpu = result["targets"].get(gw, {}).get("ratios", {}).get("slowsse-256", {}).get("cpu_us_per_request")
    rows.append(("CPU per streamed request (12 chunks)", "-" if cpu is None else f"{cpu:.0f} µs", "≤ 150 µs",
                 None if cpu is None else cpu <= 150))
    mem = result["targets"].get(gw, {}).get("memory")
    if mem:
        back = mem["after_mib"] <= 1.10 * mem["steady_mib"]
        rows.append((f"RSS growth during a {mem['soak_s']:g} s soak",
                     f"{mem['growth_mib_per_min']:+.2f} MiB/min; steady {mem['steady_mib']:.1f} MiB, "
                     f"{mem['after_mib']:.1f} MiB {mem['settle_s']:g} s after",
                     "≤ 0.5 MiB/min, and back within 10% of steady after load",
                     mem["growth_mib_per_min"] <= 0.5 and back))
    else:
        rows.append(("RSS growth during the soak", "-", "≤ 0.5 MiB/min, and back within 10% of steady", None))
    r = _ratio(result, gw, "slow-256")
    rows.append(("non-stream, 50 ms upstream, 256 connections vs direct", "-" if r is None else f"{r:.0%}",
                 "keep ≥ 95%", None if r is None else r >= 0.95))
    return rows


def rss_slope(samples: list[tuple[float, float]] | list[tuple[float, ...]], since_s: float) -> float:
    """Least-squares slope of (seconds, RSS MiB) samples taken from `since_s` on, in MiB per minute."""
    tail = [s for s in samples if s[0] >= since_s]
    if len(tail) < 3:
        return 0.0
    xs, ys = [s[0] for s in tail], [s[1] for s in tail]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs) * 60


def render(result: dict[str, Any]) -> str:
    out = [f"## Field benchmark, {result['started']}", "",
           f"Placement: {result['placement']}; load average before {result['loadavg_before']}, after "
           f"{result.get('loadavg_after', '?')}.", ""]
    out += [f"- {n}" for n in result.get("notes", [])]
    if result.get("notes"):
        out.append("")
    if any("latency" in d for d in result["targets"].values()):
        out += ["### Added latency at concurrency 1 (wrk -c1 -t1)", "", *_latency_table(result), ""]
    if any("streams" in d for d in result["targets"].values()):
        out += ["### Streams sustained (64 deltas 20 ms apart; streams.js)", "", *_streams_table(result), ""]
        for g in _gateways(result):
            a = _added_streams(result, g)
            if a:
                out.append(f"{g} at concurrency 1: added TTFT p50 {a['ttft_p50_ms']:+.2f} ms / p99 "
                           f"{a['ttft_p99_ms']:+.2f} ms; added inter-frame gap p50 {a['gap_p50_ms']:+.2f} ms / "
                           f"p99 {a['gap_p99_ms']:+.2f} ms.")
        out.append("")
    if any("ratios" in d for d in result["targets"].values()):
        out += ["### 50 ms upstream, 256 connections", "", "| target | scenario | req/s | vs direct | p99 ms | errors "
                "| CPU µs/req |", "|---|---|---:|---:|---:|---:|---:|"]
        for t, d in result["targets"].items():
            for sid, c in d.get("ratios", {}).items():
                r = _ratio(result, t, sid) if t != "direct" else None
                out.append(f"| {t} | {sid} | {c['rps']:,.0f} | {'-' if r is None else f'{r:.0%}'} | {c['p99_ms']:.1f} "
                           f"| {c['errors']} | {c.get('cpu_us_per_request', '-')} |")
        out.append("")
    if any("frontier" in d for d in result["targets"].values()):
        out += ["### Throughput frontier (non-stream, instant upstream)", "", *_frontier_table(result), ""]
    if any("memory" in d for d in result["targets"].values()):
        out += ["### Memory", "", "| target | idle RSS MiB | steady RSS MiB | growth MiB/min "
                "| growth over the second half MiB/min | RSS after MiB |", "|---|---:|---:|---:|---:|---:|"]
        for t, d in result["targets"].items():
            m = d.get("memory")
            if m:
                late = rss_slope([tuple(s) for s in m.get("samples", [])], m["soak_s"] / 2)
                out.append(f"| {t} | {m['idle_mib']:.1f} | {m['steady_mib']:.1f} | {m['growth_mib_per_min']:+.2f} "
                           f"| {late:+.2f} | {m['after_mib']:.1f} ({m['settle_s']:g} s after) |")
        out.append("")
    for g in _gateways(result):
        out += [f"### Reach (issue 14): {g}", "", "| measure | measured | goal | |", "|---|---|---|---|"]
        out += [f"| {m} | {v} | {goal} | {_mark(ok)} |" for m, v, goal, ok in reach(result, g)]
        out.append("")
    return "\n".join(out)


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    print(render(json.loads(Path(sys.argv[1]).read_text())))
