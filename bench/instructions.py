#!/usr/bin/env python3
"""Instructions per request through Switchboard, counted by callgrind: the figure to compare the
gateway with itself when the machine is too noisy for CPU time (issue 14's stream-path work).

    python bench/instructions.py [--kind sse|plain|slowsse|slow|paced] [--n1 100] [--n2 600] [--tracing]
                                 [--concurrency 1] [--keep]

Starts nginx (upstream.py) and `switchboard serve` (targets.py's config) under
`valgrind --tool=callgrind`, sends 50 warm-up requests and then N keep-alive chat requests, one at a
time or from `--concurrency` connections at once (requests in flight together: what batches and the
garbage collector see under load) (stream with `include_usage` for `sse`: 12 chunks and [DONE];
`paced`: upstream.py's paced stream, 64 deltas each read on its own, the cost of a stream's middle),
stops it, and reads the total count.
Run twice, with N1 and N2 requests: (total2 - total1) / (N2 - N1) is the cost of one request, with
start-up and shutdown cancelled out. Repeatable to about 1% (the same binary and inputs give the
same count whatever else the machine does); ~30 s. Needs valgrind (Debian's package). `--tracing`
exports every request's spans to nginx's OTLP sink (issue 17's cost; all threads are counted, the
export thread's included).
"""

from __future__ import annotations

import argparse
import glob
import http.client
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from load import request_body  # noqa: E402
from run import free_port  # noqa: E402
from targets import MASTER_KEY, MODELS, Switchboard  # noqa: E402
from upstream import Upstream  # noqa: E402


def _send(port: int, body: bytes, requests: int) -> None:
    """`requests` chat requests, one after the other on one keep-alive connection."""
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    for _ in range(requests):
        conn.request("POST", "/v1/chat/completions", body, headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise SystemExit(f"bench: {resp.status} {data[:300]!r}")
    conn.close()


def count(upstream_url: str, workdir: Path, kind: str, requests: int, tracing: bool = False,
          concurrency: int = 1) -> dict[str, int]:
    """Callgrind's instruction totals, by thread (its file suffix: 01 is the event loop's), for a
    gateway run that served `requests` after the warm-up, from `concurrency` connections at once."""
    port = free_port()
    target = Switchboard(workdir, port, upstream_url, tracing=tracing)
    workdir.mkdir(parents=True)
    out = workdir / "callgrind.out"
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}",
                             sys.executable, "-m",
                             "switchboard.cli", *target.command()[1:]],
                            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/health")
            conn.getresponse().read()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit("bench: switchboard did not start under valgrind") from None
            time.sleep(0.5)
    conn.close()
    body = request_body(MODELS[kind], kind.endswith("sse") or kind == "paced").encode()
    with ThreadPoolExecutor(concurrency) as pool:  # 50 warm-up requests (from every connection: paced ones are slow)
        for done in [pool.submit(_send, port, body, max(1, 50 // concurrency)) for _ in range(concurrency)]:
            done.result()
        for done in [pool.submit(_send, port, body, requests // concurrency) for _ in range(concurrency)]:
            done.result()
    time.sleep(1.0)  # the usage writer and the access log flush
    proc.terminate()
    proc.wait(300)
    totals: dict[str, int] = {}
    for path in sorted(glob.glob(f"{out}*")):
        for line in open(path):
            if line.startswith(("totals:", "summary:")):
                totals[path.rsplit("-", 1)[-1]] = int(line.split()[1])
                break
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["sse", "plain", "slowsse", "slow", "paced"], default="sse",
                        help="the upstream: 12-chunk stream or JSON, at once or after 50 ms (slow*); paced: "
                             "upstream.py's paced stream, 64 deltas each read on its own (use --concurrency)")
    parser.add_argument("--n1", type=int, default=100)
    parser.add_argument("--n2", type=int, default=600)
    parser.add_argument("--tracing", action="store_true", help="export every request's spans (sample_ratio 1.0)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the callgrind files (printed) for callgrind_annotate, e.g. to diff two kinds")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="connections sending at once (N1 and N2 are rounded down to multiples of it)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("bench: needs valgrind: apt-get install -y valgrind")
    work = Path(tempfile.mkdtemp(prefix="switchboard-instructions-"))
    upstream = Upstream(work / "nginx", free_port()).start()
    try:
        c = max(1, args.concurrency)
        args.n1, args.n2 = args.n1 // c * c, args.n2 // c * c
        first = count(upstream.url, work / "a", args.kind, args.n1, args.tracing, c)
        second = count(upstream.url, work / "b", args.kind, args.n2, args.tracing, c)
    finally:
        upstream.stop()
        if args.keep:
            print(f"callgrind files kept in {work}/a and {work}/b")
        else:
            shutil.rmtree(work, ignore_errors=True)
    n = args.n2 - args.n1
    per_request = (sum(second.values()) - sum(first.values())) / n
    label = f"{args.kind}{' traced' if args.tracing else ''} c={args.concurrency}"
    print(f"{label}: {per_request / 1e3:.1f} k instructions "
          "per request "
          f"(callgrind totals {sum(first.values()):,} after {args.n1} and {sum(second.values()):,} after {args.n2} "
          "requests)")
    # By thread: 01 is the event loop's; the others are workers (SQLite writer, span export...). A worker
    # that batches (the span exporter) does less per request at a real request rate than at the few
    # hundred requests a second that callgrind lets through.
    for thread in sorted(set(first) | set(second)):
        delta = (second.get(thread, 0) - first.get(thread, 0)) / n
        if abs(delta) >= 500:
            print(f"  thread {thread}: {delta / 1e3:.1f} k")


if __name__ == "__main__":
    main()
