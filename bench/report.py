"""The benchmark's markdown report: the results table (ratios vs direct and vs LiteLLM) and the bars.

Input is the plain dict `run.py` also writes as JSON, so a saved result can be re-rendered with
`python bench/report.py bench/results/<run>.json`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["bars", "render", "results_stem", "save_results"]

RESULTS = Path(__file__).resolve().parent / "results"


def results_stem(prefix: str, started: str) -> Path:
    """bench/results/<prefix><started, compact>: where a run's .json and .md go (the folder made)."""
    RESULTS.mkdir(exist_ok=True)
    return RESULTS / (prefix + started.replace(":", "").replace("-", ""))


def save_results(stem: Path, result: dict[str, Any], markdown: str | None = None) -> None:
    """Write a run's numbers (.json) and, when given, its report (.md, also printed)."""
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    if markdown is None:
        return
    stem.with_suffix(".md").write_text(markdown)
    print()
    print(markdown)
    print(f"results: {stem}.json / .md")

# The bars (single worker process on the 2-core machine).
MIN_VS_LITELLM = 20.0
MIN_VS_DIRECT_SLOW = 0.85
MAX_STARTUP_S = 1.5
MAX_RSS_MB = 120.0
MAX_PACKAGES = 40


def _cell(result: dict[str, Any], scenario: str, target: str) -> dict[str, Any] | None:
    return result["cells"].get(scenario, {}).get(target)


def _fmt_rps(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "-"
    text = f"{cell['rps']:,.0f}"
    return text + f" ({cell['errors']} err)" if cell["errors"] else text


def _fmt_lat(cell: dict[str, Any] | None) -> str:
    return "-" if cell is None else f"{cell['p50_ms']:.1f} / {cell['p99_ms']:.1f}"


def _fmt_cpu(cell: dict[str, Any] | None) -> str:
    value = None if cell is None else cell.get("cpu_us_per_request")
    return "-" if value is None else f"{value:,.0f}"


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if a is None or b is None or not b["rps"]:
        return None
    return a["rps"] / b["rps"]


def _fmt_ratio(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if percent else f"{value:.1f}x"


def bars(result: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(bar, threshold, measured, passed) rows; passed is None when not measured in this run."""
    rows: list[tuple[str, str, str, bool | None]] = []
    for scenario in result["scenarios"]:
        if scenario["kind"] != "plain":
            continue
        ratio = _ratio(_cell(result, scenario["id"], "switchboard"), _cell(result, scenario["id"], "litellm"))
        rows.append((f"non-stream throughput vs LiteLLM, {scenario['connections']} conns", f">= {MIN_VS_LITELLM:g}x",
                     _fmt_ratio(ratio), None if ratio is None else ratio >= MIN_VS_LITELLM))
    for scenario in result["scenarios"]:
        if scenario["kind"] != "slow":
            continue
        ratio = _ratio(_cell(result, scenario["id"], "switchboard"), _cell(result, scenario["id"], "direct"))
        rows.append((f"50 ms upstream, {scenario['connections']} conns: throughput vs direct",
                     f">= {MIN_VS_DIRECT_SLOW:.0%}", _fmt_ratio(ratio, True),
                     None if ratio is None else ratio >= MIN_VS_DIRECT_SLOW))
    sb = result.get("switchboard", {})
    startup = sb.get("first_200_s")
    rows.append(("startup to first 200 (process start -> /health 200 -> chat 200)", f"<= {MAX_STARTUP_S:g} s",
                 "-" if startup is None else f"{startup:.2f} s (health {sb.get('health_s', 0):.2f} s)",
                 None if startup is None else startup <= MAX_STARTUP_S))
    rss = sb.get("rss_mb_after")
    rows.append(("RSS after the benchmark (VmRSS, all worker processes)", f"<= {MAX_RSS_MB:g} MB",
                 "-" if rss is None else f"{rss:.0f} MB", None if rss is None else rss <= MAX_RSS_MB))
    packages = result.get("packages")
    rows.append(("packages pulled by `pip install -e .` into a fresh venv", f"<= {MAX_PACKAGES}",
                 "- (run with --count-packages)" if packages is None
                 else f"{packages['count']} (incl. switchboard itself)",
                 None if packages is None else packages["count"] <= MAX_PACKAGES))
    return rows


def render(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        f"Run {result['started']} · {env['cpus']} CPUs · load average before/after "
        f"{env['loadavg_before']} / {env['loadavg_after']} · Switchboard workers: {result['workers']} · "
        f"{env.get('placement', 'not pinned')} · "
        f"{result['duration_s']:g} s per cell after {result['warmup_s']:g} s warm-up · "
        f"nginx {env.get('nginx', '?')}, wrk {env.get('wrk', '?')}, LiteLLM {env.get('litellm', '-')}",
        "",
        "| scenario | conns | direct RPS | Switchboard RPS | LiteLLM RPS | SB / direct | SB / LiteLLM "
        "| p50 / p99 ms direct | p50 / p99 ms Switchboard | p50 / p99 ms LiteLLM | CPU us/req SB / LiteLLM |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in result["scenarios"]:
        sid = scenario["id"]
        direct, sb, ll = (_cell(result, sid, t) for t in ("direct", "switchboard", "litellm"))
        lines.append(
            f"| {scenario['label']} | {scenario['connections']} | {_fmt_rps(direct)} | {_fmt_rps(sb)} | {_fmt_rps(ll)} "
            f"| {_fmt_ratio(_ratio(sb, direct), True)} | {_fmt_ratio(_ratio(sb, ll))} "
            f"| {_fmt_lat(direct)} | {_fmt_lat(sb)} | {_fmt_lat(ll)} | {_fmt_cpu(sb)} / {_fmt_cpu(ll)} |")
    lines += ["", "| bar (issue 2) | threshold | measured | |", "|---|---|---|---|"]
    if result["workers"] != 1:
        lines.insert(-2, f"The bars are defined for one worker process; this run used {result['workers']}.")
        lines.insert(-2, "")
    for name, threshold, measured, passed in bars(result):
        verdict = "-" if passed is None else ("pass" if passed else "**FAIL**")
        lines.append(f"| {name} | {threshold} | {measured} | {verdict} |")
    ll = result.get("litellm")
    if ll:
        lines += ["", f"LiteLLM for reference: startup to first 200 {ll['first_200_s']:.2f} s, "
                      f"RSS after the benchmark {ll['rss_mb_after']:.0f} MB."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(render(json.load(f)))
