"""Where the Node clients the tests run live, and how a test runs one of them.

The clients are pinned in `tests/clients/node/package.json` (+ `package-lock.json`) and installed
by `.ci/run` (`npm ci --prefix tests/clients/node`); `node_modules/` is not committed. A test that
needs a client that is not installed is skipped on a developer's machine (with the command that
installs it) and FAILS in CI (the env var `CI` is set there), so a broken install step is never a
silent skip. Every run is bounded by a timeout; on a timeout or an unexpected exit the test fails
with the client's output.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
INSTALL = f"npm ci --prefix {NODE_DIR}"


def node_bin(name: str) -> Path:
    """`node_modules/.bin/<name>` (`node`: the Node 22 the AI SDK needs; `codex`: Codex CLI)."""
    path = NODE_DIR / "node_modules" / ".bin" / name
    if not path.exists():
        message = f"{path} is missing: install the Node clients with `{INSTALL}`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_client(argv: list[str | Path], *, env: dict[str, str], timeout: float, cwd: Path | None = None,
               expect_exit: int | None = 0) -> subprocess.CompletedProcess[str]:
    """Run a client to its end (stdin closed), at most `timeout` seconds."""
    try:
        done = subprocess.run([str(a) for a in argv], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(f"{argv[0]} did not finish in {timeout} s\nstdout:\n{out[-4000:]}\nstderr:\n{err[-8000:]}")
    if expect_exit is not None and done.returncode != expect_exit:
        pytest.fail(f"{argv[0]} exited {done.returncode}\nstdout:\n{done.stdout[-4000:]}\n"
                    f"stderr:\n{done.stderr[-8000:]}")
    return done
