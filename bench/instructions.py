#!/usr/bin/env python3
"""Instructions per request through Switchboard, counted by callgrind: the figure to compare the
gateway with itself when the machine is too noisy for CPU time (issue 14's stream-path work).

    python bench/instructions.py [--kind sse|plain] [--n1 100] [--n2 600]

Starts nginx (upstream.py) and `switchboard serve` (targets.py's config) under
`valgrind --tool=callgrind`, sends 50 warm-up requests and then N sequential keep-alive chat requests
(stream with `include_usage` for `sse`: 12 chunks and [DONE]), stops it, and reads the total count.
Run twice, with N1 and N2 requests: (total2 - total1) / (N2 - N1) is the cost of one request, with
start-up and shutdown cancelled out. Repeatable to about 1% (the same binary and inputs give the
same count whatever else the machine does); ~30 s. Needs valgrind (Debian's package).
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
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from load import request_body  # noqa: E402
from run import free_port  # noqa: E402
from targets import MASTER_KEY, MODELS, Switchboard  # noqa: E402
from upstream import Upstream  # noqa: E402


def count(upstream_url: str, workdir: Path, kind: str, requests: int) -> int:
    """Callgrind's instruction total for a gateway run that served `requests` after the warm-up."""
    port = free_port()
    target = Switchboard(workdir, port, upstream_url)
    workdir.mkdir(parents=True)
    out = workdir / "callgrind.out"
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
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
    body = request_body(MODELS[kind], kind == "sse").encode()
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
    for _ in range(50 + requests):
        conn.request("POST", "/v1/chat/completions", body, headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise SystemExit(f"bench: {resp.status} {data[:300]!r}")
    time.sleep(1.0)  # the usage writer and the access log flush
    proc.terminate()
    proc.wait(300)
    total = 0
    for path in glob.glob(f"{out}*"):
        for line in open(path):
            if line.startswith(("totals:", "summary:")):
                total += int(line.split()[1])
                break
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["sse", "plain"], default="sse")
    parser.add_argument("--n1", type=int, default=100)
    parser.add_argument("--n2", type=int, default=600)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("bench: needs valgrind: apt-get install -y valgrind")
    work = Path(tempfile.mkdtemp(prefix="switchboard-instructions-"))
    upstream = Upstream(work / "nginx", free_port()).start()
    try:
        first = count(upstream.url, work / "a", args.kind, args.n1)
        second = count(upstream.url, work / "b", args.kind, args.n2)
    finally:
        upstream.stop()
        shutil.rmtree(work, ignore_errors=True)
    per_request = (second - first) / (args.n2 - args.n1)
    print(f"{args.kind}: {per_request / 1e3:.1f} k instructions per request "
          f"(callgrind totals {first:,} after {args.n1} and {second:,} after {args.n2} requests)")


if __name__ == "__main__":
    main()
