"""The Responses bridge's price: `/v1/responses` against `/v1/chat/completions` on the same gateway.

    python bench/responses.py [--duration 8] [--warmup 2] [--scenarios plain-64,sse-64,slow-256,slowsse-256]

One nginx upstream (upstream.py: the instant and the 50 ms answers, JSON and event streams) and one
Switchboard (one worker, pinned as bench/run.py pins it). For each scenario the same one-turn
request is sent as a chat completion and as a Responses call (`instructions` + `input`,
`store: false` as Codex sends it, so no store write is priced), interleaved, and the gateway's CPU
time per request is compared: issue 12 wants the bridge within 1.5x of the chat path. Throughput
and latency are printed too, but on a shared machine CPU per request is the figure to read.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from load import request_body, run_wrk  # noqa: E402
from run import SCENARIOS, Scenario, free_port  # noqa: E402
from targets import MASTER_KEY, MODELS, Switchboard, cpu_seconds  # noqa: E402
from upstream import Upstream  # noqa: E402

BAR = 1.5


def responses_body(model: str, stream: bool) -> str:
    """The chat request of load.request_body, as a Responses call."""
    body: dict[str, object] = {"model": model, "instructions": "You are a helpful assistant.",
                               "input": "Hello! Please say hello back.", "max_output_tokens": 64,
                               "temperature": 0.7, "store": False}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":"))


def _cell(port: int, path: str, body: str, sc: Scenario, args: argparse.Namespace, workdir: Path,
          name: str, pid: int) -> tuple[float, float, float, int]:
    url = f"http://127.0.0.1:{port}{path}"
    if args.warmup > 0:
        run_wrk(url, body, sc.connections, args.warmup, workdir, f"{name}-warmup", MASTER_KEY)
    before = cpu_seconds(pid)
    cell = run_wrk(url, body, sc.connections, args.duration, workdir, name, MASTER_KEY)
    cpu_us = (cpu_seconds(pid) - before) / max(1, cell.requests) * 1e6
    return cpu_us, cell.rps, cell.p99_ms, cell.errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--scenarios", default="plain-64,sse-64,slow-256,slowsse-256")
    args = parser.parse_args(argv)
    wanted = set(args.scenarios.split(","))
    scenarios = [s for s in SCENARIOS if s.id in wanted]
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-bench-responses-"))
    upstream = Upstream(workdir / "nginx", free_port()).start()
    rows: list[str] = []
    failed = False
    try:
        sb = Switchboard(workdir / "switchboard", free_port(), upstream.url)
        sb.start()
        try:
            assert sb.proc is not None
            for sc in scenarios:
                model = MODELS[sc.kind]
                chat = _cell(sb.port, "/v1/chat/completions", request_body(model, sc.stream), sc, args, workdir,
                             f"chat-{sc.id}", sb.proc.pid)
                resp = _cell(sb.port, "/v1/responses", responses_body(model, sc.stream), sc, args, workdir,
                             f"responses-{sc.id}", sb.proc.pid)
                ratio = resp[0] / chat[0] if chat[0] else float("inf")
                ok = ratio <= BAR and resp[3] == 0
                failed = failed or not ok
                rows.append(f"| {sc.label} | {sc.connections} | {chat[0]:.0f} | {resp[0]:.0f} | {ratio:.2f}x "
                            f"| {chat[1]:,.0f} / {resp[1]:,.0f} | {chat[2]:.1f} / {resp[2]:.1f} | {resp[3]} "
                            f"| {'pass' if ok else 'FAIL'} |")
                print(rows[-1], flush=True)
        finally:
            sb.stop()
    finally:
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print("| scenario | conns | chat CPU us/req | responses CPU us/req | ratio (bar <= 1.5x) | RPS chat / responses "
          "| p99 ms chat / responses | responses errors | |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
