"""Where a gateway's CPU goes under load: py-spy sampling of the process, summarised by component.

`Profiler(pid, seconds, out)` runs `py-spy record --format raw` (collapsed stacks) next to a wrk
cell; `summarise(path)` groups the samples: anything under aiohttp is the upstream client, then
each sample goes to the deepest frame that belongs to a known component, and the top functions by
self time are listed. Needs `pip install py-spy` in the venv that runs the benchmark.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["Profiler", "summarise"]

# (component, substrings of a frame's "function (file:line)" text); the first match from the leaf up wins.
COMPONENTS = [
    ("access log (logging + JSON line)", ("observability/access_log", "logging/")),
    ("metrics (prometheus_client)", ("observability/metrics", "prometheus_client/")),
    ("usage store (sqlite/postgres writer)", ("switchboard/store/", "sqlite3")),
    ("asyncio timeouts (router deadlines)", ("asyncio/timeouts",)),
    ("request validation", ("headends/validation",)),
    ("router, limits, health", ("switchboard/routing/",)),
    ("SSE parse/encode, stream relay", ("switchboard/sse", "headends/relay", "SSEChunkStream", "_openai_event")),
    ("provider body building", ("providers/openai",)),
    ("auth", ("switchboard/access/",)),
    ("switchboard ASGI layer, app, headend", ("switchboard/",)),
    ("uvicorn HTTP server + event loop", ("uvicorn/", "asyncio/")),
]
_UPSTREAM_CLIENT = ("aiohttp/", "yarl/", "multidict/")


def _component(frames: list[str]) -> str:
    if any(key in f for f in frames for key in _UPSTREAM_CLIENT):
        return "aiohttp client (upstream HTTP)"
    for frame in reversed(frames):
        for name, keys in COMPONENTS:
            if any(key in frame for key in keys):
                return name
    return "other"


def _short(frame: str) -> str:
    return re.sub(r"\((?:[^()]*?/(?:site-packages|python3\.\d+)/)", "(", frame)


def summarise(path: Path, top: int = 25) -> str:
    by_component: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        by_component[_component(frames)] += n
        by_function[_short(frames[-1])] += n
    if not total:
        return "no samples\n"
    lines = [f"{total} samples (CPU-active only)", "", "by component:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in by_component.most_common()]
    lines += ["", f"top {top} functions by self time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in by_function.most_common(top)]
    return "\n".join(lines) + "\n"


class Profiler:
    """py-spy sampling `pid` (and its children) for `seconds`, into `out` (collapsed stacks)."""

    def __init__(self, pid: int, seconds: float, out: Path) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            raise SystemExit("bench: --profile needs py-spy: pip install py-spy")
        self.out = out
        self.proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
                                      "--rate", "200", "--format", "raw", "--nonblocking", "--subprocesses",
                                      "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self) -> str:
        _, err = self.proc.communicate(timeout=120)
        if self.proc.returncode != 0 or not self.out.exists():
            return f"py-spy failed ({self.proc.returncode}): {err.decode(errors='replace')[-500:]}\n"
        return summarise(self.out)


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1])), end="")
