"""Start a real `switchboard serve` process on a free port for integration tests."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx

_LISTENING = re.compile(r"listening on http://\S+?:(\d+) ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SwitchboardProcess:
    def __init__(self, config_text: str, env: dict[str, str] | None = None, workers: int = 1,
                 extra_files: dict[str, str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="switchboard-test-"))
        for name, text in (extra_files or {}).items():
            path = self.dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.config_path = self.dir / "switchboard.yaml"
        self.config_path.write_text(config_text)
        self.port = 0  # the server binds port 0; start() reads the port it got from its log
        self.env = {**os.environ, **(env or {})}
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.log_path = self.dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> SwitchboardProcess:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "switchboard.cli", "serve", "--config", str(self.config_path),
             "--port", "0", "--workers", str(self.workers), "--log-level", "info"],
            cwd=self.dir, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"switchboard exited early:\n{self.logs()}")
            if not self.port:  # no port picked ahead and released: nothing else can take it in between
                found = _LISTENING.search(self.logs())
                if found is None:
                    time.sleep(0.02)
                    continue
                self.port = int(found.group(1))
            try:
                if httpx.get(self.url + "/health", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"switchboard did not start:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
