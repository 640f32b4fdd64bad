"""Load generation with wrk: the Lua script of one cell, running it, and parsing its result.

The Lua `done()` hook prints one `BENCH_JSON {...}` line with the totals and latency percentiles,
so nothing depends on wrk's human-readable output. Non-2xx answers and socket errors are counted;
a cell with errors is reported as such (a fast error is not throughput).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import cpus

__all__ = ["CellResult", "request_body", "run_wrk"]

_LUA = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
{auth}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {{"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def request_body(model: str, stream: bool) -> str:
    """A small, typical chat request (what an SDK sends for a one-turn chat)."""
    body: dict[str, object] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello! Please say hello back."},
        ],
        "max_tokens": 64,
        "temperature": 0.7,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":"))


@dataclass(slots=True)
class CellResult:
    requests: int
    duration_s: float
    rps: float  # successful (2xx) responses per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # non-2xx + socket errors (connect/read/write/timeout)
    status_errors: int
    timeouts: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def run_wrk(url: str, body: str, connections: int, duration_s: float, workdir: Path, name: str,
            api_key: str | None = None, threads: int = 2, timeout_s: float = 10.0) -> CellResult:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench: needs wrk: apt-get install -y wrk")
    script = workdir / f"{name}.lua"
    auth = f'wrk.headers["Authorization"] = "Bearer {api_key}"' if api_key else ""
    script.write_text(_LUA.format(body=body, auth=auth))
    cmd = [wrk, f"-t{max(1, min(threads, connections))}", f"-c{connections}", f"-d{duration_s:g}s",
           f"--timeout={timeout_s:g}s", "-s", str(script), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 60,
                          preexec_fn=cpus.for_load())
    (workdir / f"{name}.wrk.txt").write_text(proc.stdout + proc.stderr)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    raw = json.loads(line[len("BENCH_JSON "):])
    duration = raw["duration_us"] / 1e6
    socket_errors = raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"]
    return CellResult(
        requests=raw["requests"],
        duration_s=round(duration, 3),
        rps=round((raw["requests"] - raw["status_errors"]) / duration, 1) if duration else 0.0,
        p50_ms=round(raw["p50_us"] / 1000, 2),
        p90_ms=round(raw["p90_us"] / 1000, 2),
        p99_ms=round(raw["p99_us"] / 1000, 2),
        max_ms=round(raw["max_us"] / 1000, 2),
        errors=raw["status_errors"] + socket_errors,
        status_errors=raw["status_errors"],
        timeouts=raw["timeouts"],
    )
