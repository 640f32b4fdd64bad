"""The translated upstreams' price: one chat request to OpenAI-compatible, Anthropic and Bedrock upstreams.

    python bench/providers.py [--duration 8] [--warmup 2] [--rounds 2] [--connections 64]

One nginx (upstream.py: the instant OpenAI `chat.completion`, a fixed Anthropic `message` at
`/anthropic/v1/messages` and a fixed Converse answer at `/bedrock/model/{id}/converse`) and one
Switchboard (one worker, pinned to CPU 0 as bench/run.py pins it; everything on: access log,
metrics, SQLite usage log) with four providers: `openai` (the hub format, relayed as bytes),
`anthropic` (translated both ways), and Bedrock twice: with a Bedrock API key (bearer) and with
`aws_access_key_id` / `aws_secret_access_key` (every request SigV4-signed). The same non-stream chat
request (load.request_body) goes to each lane in turn, `--rounds` times interleaved, and the gateway
process's CPU time per request is printed per lane and round: on a shared machine that is the figure
to read (throughput moves with the neighbours). nginx checks no key or signature; the Bedrock fake of
the test suite does (tests/fakes/bedrock_upstream.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import cpus  # noqa: E402
from load import request_body, run_wrk  # noqa: E402
from run import free_port  # noqa: E402
from targets import MASTER_KEY, UPSTREAM_KEY, Switchboard, chat_once, cpu_seconds  # noqa: E402
from upstream import Upstream  # noqa: E402

NOVA = "us.amazon.nova-lite-v1:0"
# lane -> (label, public model name)
LANES = {
    "openai": ("OpenAI-compatible (relayed)", "bench"),
    "anthropic": ("Anthropic (translated)", "bench-anthropic"),
    "bedrock-bearer": ("Bedrock Converse, API key (bearer)", "bench-bedrock-key"),
    "bedrock-sigv4": ("Bedrock Converse, SigV4", "bench-bedrock"),
}


class TranslatingSwitchboard(Switchboard):
    """Switchboard with one provider per upstream format (the model `bench` answers its startup check)."""

    def config_text(self) -> str:
        up = self.upstream_url
        return f"""server: {{host: 127.0.0.1, port: {self.port}}}
auth: {{master_key: {MASTER_KEY}}}
providers:
  openai: {{type: openai, base_url: "{up}/plain/v1", keys: [{{value: {UPSTREAM_KEY}}}]}}
  anthropic: {{type: anthropic, base_url: "{up}/anthropic", keys: [{{value: sk-ant-bench}}]}}
  bedrock: {{type: bedrock, region: us-east-1, base_url: "{up}/bedrock", aws_access_key_id: AKIABENCH,
            aws_secret_access_key: bench-secret}}
  bedrock-key: {{type: bedrock, region: us-east-1, base_url: "{up}/bedrock", keys: [bedrock-api-key-bench]}}
models:
  bench: {{route: openai/gpt-4o-mini}}
  bench-anthropic: {{route: anthropic/claude-bench}}
  bench-bedrock: {{route: "bedrock/{NOVA}"}}
  bench-bedrock-key: {{route: "bedrock-key/{NOVA}"}}
"""


def _check(port: int) -> None:
    """Every lane answers the fixed text, so no lane measures fast errors."""
    for lane, (_, model) in LANES.items():
        status, raw, _ = chat_once(port, "/v1/chat/completions", model, False)
        body = json.loads(raw) if status == 200 else {}
        text = (body.get("choices") or [{}])[0].get("message", {}).get("content")
        if status != 200 or text != "Hello! How can I help you today?":
            raise SystemExit(f"lane {lane} answered {status}: {raw[:300]!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--lanes", default=",".join(LANES), help="the lanes, in the order measured each round")
    args = parser.parse_args(argv)
    lanes = {lane: LANES[lane] for lane in args.lanes.split(",")}
    n_cpus = len(os.sched_getaffinity(0))
    if n_cpus >= 2:
        cpus.place({0}, set(range(1, n_cpus)))
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-bench-providers-"))
    upstream = Upstream(workdir / "nginx", free_port()).start()
    cpu: dict[str, list[float]] = {lane: [] for lane in lanes}
    rps: dict[str, list[float]] = {lane: [] for lane in lanes}
    errors = 0
    try:
        sb = TranslatingSwitchboard(workdir / "switchboard", free_port(), upstream.url)
        sb.start()
        try:
            assert sb.proc is not None
            _check(sb.port)
            url = f"http://127.0.0.1:{sb.port}/v1/chat/completions"
            for round_no in range(args.rounds):
                for lane, (label, model) in lanes.items():
                    body = request_body(model, False)
                    if args.warmup > 0:
                        run_wrk(url, body, args.connections, args.warmup, workdir, f"{lane}-warmup", MASTER_KEY)
                    before = cpu_seconds(sb.proc.pid)
                    cell = run_wrk(url, body, args.connections, args.duration, workdir, f"{lane}-{round_no}",
                                   MASTER_KEY)
                    per_request = (cpu_seconds(sb.proc.pid) - before) / max(1, cell.requests) * 1e6
                    cpu[lane].append(per_request)
                    rps[lane].append(cell.rps)
                    errors += cell.errors
                    print(f"  round {round_no + 1} {label:38} {cell.rps:>8,.0f} rps  p99 {cell.p99_ms:6.1f} ms  "
                          f"errors {cell.errors}  CPU {per_request:5.0f} us/req", flush=True)
        finally:
            sb.stop()
    finally:
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"| upstream (non-stream chat, c={args.connections}) | CPU µs/req per round | RPS per round |")
    print("|---|---:|---:|")
    for lane, (label, _) in lanes.items():
        print(f"| {label} | {' / '.join(f'{v:.0f}' for v in cpu[lane])} | "
              f"{' / '.join(f'{v:,.0f}' for v in rps[lane])} |")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
