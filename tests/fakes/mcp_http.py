"""A test MCP server script run over Streamable HTTP on a free 127.0.0.1 port, for as long as a block runs."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.server import free_port


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("MCP HTTP server exited early")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("MCP HTTP server did not start")


@contextmanager
def http_mcp_server(script: Path) -> Iterator[int]:
    """Run `script --http PORT`; yields the port once it accepts connections, stops the server after."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(script), "--http", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
