"""The gateways under test: Switchboard and LiteLLM's proxy, each configured for the nginx upstream.

Both expose the same public model names, one per upstream kind (`bench` -> /plain, `bench-sse` ->
/sse, `bench-slow` -> /slow, `bench-slowsse` -> /slowsse), so one wrk script serves both.
A `Target` is started, checked with a real chat completion, measured, and stopped; its RSS (summed
over the process tree, for `--workers N`) is read from /proc before it stops.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cpus
from upstream import PATHS

__all__ = ["MASTER_KEY", "MODELS", "LiteLLM", "Switchboard", "Target", "chat_once", "cpu_seconds", "rss_kib"]

MODELS = {kind: ("bench" if kind == "plain" else f"bench-{kind}") for kind in PATHS}
UPSTREAM_KEY = "sk-bench-upstream"
# Both gateways run with auth on (LiteLLM refuses to start without a master key; it is also the realistic setup).
MASTER_KEY = "sk-bench-master-0123456789abcdef0123456789abcdef"


def _request(port: int, method: str, path: str, body: bytes | None = None,
             timeout: float = 5.0) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {MASTER_KEY}"} if body else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def chat_once(port: int, path: str, model: str, stream: bool, timeout: float = 10.0) -> tuple[int, bytes, str]:
    """One chat completion; returns (status, body, content-type)."""
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    status, raw, headers = _request(port, "POST", path, json.dumps(body).encode(), timeout)
    return status, raw, headers.get("content-type", "")


def check_answers(port: int, path: str, model_for: dict[str, str]) -> None:
    """Fail loudly unless the target answers a real completion and a real stream (not fast errors)."""
    status, raw, ctype = chat_once(port, path, model_for["plain"], False)
    if status != 200 or json.loads(raw).get("object") != "chat.completion":
        raise RuntimeError(f"non-stream check failed on :{port}{path}: {status} {raw[:300]!r}")
    status, raw, ctype = chat_once(port, path, model_for["sse"], True)
    if status != 200 or not ctype.startswith("text/event-stream") or b"data: [DONE]" not in raw:
        raise RuntimeError(f"stream check failed on :{port}{path}: {status} {ctype} {raw[:300]!r}")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def rss_kib(pid: int) -> int:
    """VmRSS of a process plus all its descendants (uvicorn workers are children), in KiB."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    except OSError:
        return 0
    return total + sum(rss_kib(child) for child in _children(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process plus all its descendants (workers), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return own + sum(cpu_seconds(child) for child in _children(pid))


class Target:
    """A gateway process on 127.0.0.1:`port`."""

    name = "target"
    chat_path = "/v1/chat/completions"

    def __init__(self, workdir: Path, port: int, upstream_url: str) -> None:
        self.workdir = workdir
        self.port = port
        self.upstream_url = upstream_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.health_s: float | None = None  # process start -> /health 200
        self.first_200_s: float | None = None  # process start -> first chat completion 200
        self.log_path = workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    @property
    def health_path(self) -> str:
        return "/health"

    def start(self, timeout: float = 120.0) -> Target:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command, env = self.command(), self.env()
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            started = time.perf_counter()
            self.proc = subprocess.Popen(command, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=cpus.for_gateway())
        deadline = started + timeout
        body = json.dumps({"model": MODELS["plain"], "messages": [{"role": "user", "content": "hi"}]}).encode()
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early ({self.proc.returncode}); see {self.log_path}")
            try:
                if self.health_s is None:
                    if _request(self.port, "GET", self.health_path, timeout=1.0)[0] == 200:
                        self.health_s = time.perf_counter() - started
                if self.health_s is not None and _request(self.port, "POST", self.chat_path, body, 5.0)[0] == 200:
                    self.first_200_s = time.perf_counter() - started
                    return self
            except OSError:
                pass
            time.sleep(0.005)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout}s; see {self.log_path}")

    def rss_mib(self) -> float:
        return round(rss_kib(self.proc.pid) / 1024, 1) if self.proc is not None else 0.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Switchboard(Target):
    name = "switchboard"

    def __init__(self, workdir: Path, port: int, upstream_url: str, workers: int = 1,
                 log_level: str = "warning", tracing: bool = False) -> None:
        super().__init__(workdir, port, upstream_url)
        self.workers = workers
        self.log_level = log_level
        self.tracing = tracing  # export every request's spans (sample_ratio 1.0) to nginx's OTLP sink

    def config_text(self) -> str:
        lines = [f"server: {{host: 127.0.0.1, port: {self.port}}}", f"auth: {{master_key: {MASTER_KEY}}}", "providers:"]
        for kind, path in PATHS.items():
            lines.append(f"  {kind}: {{type: openai, base_url: \"{self.upstream_url}{path}\", "
                         f"keys: [{{value: {UPSTREAM_KEY}}}]}}")
        lines.append("models:")
        lines += [f"  {MODELS[kind]}: {{route: {kind}/gpt-4o-mini}}" for kind in PATHS]
        if self.tracing:
            lines.append(f"observability: {{otlp: {{endpoint: \"{self.upstream_url}\", sample_ratio: 1.0}}}}")
        return "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        config = self.workdir / "switchboard.yaml"
        config.write_text(self.config_text())
        script = Path(sys.executable).parent / "switchboard"  # the console script users run
        head = [str(script)] if script.exists() else [sys.executable, "-m", "switchboard.cli"]
        return [*head, "serve", "--config", str(config), "--port", str(self.port), "--workers", str(self.workers),
                "--log-level", self.log_level]


class LiteLLM(Target):
    name = "litellm"

    def __init__(self, workdir: Path, port: int, upstream_url: str, venv: Path, workers: int = 1) -> None:
        super().__init__(workdir, port, upstream_url)
        self.venv = venv
        self.workers = workers

    @property
    def health_path(self) -> str:
        return "/health/liveliness"

    def config_text(self) -> str:
        lines = ["model_list:"]
        for kind, path in PATHS.items():
            lines += [f"  - model_name: {MODELS[kind]}",
                      "    litellm_params:",
                      "      model: openai/gpt-4o-mini",
                      f"      api_base: \"{self.upstream_url}{path}\"",
                      f"      api_key: {UPSTREAM_KEY}"]
        lines += ["general_settings:", f"  master_key: {MASTER_KEY}",
                  "litellm_settings:", "  set_verbose: false", "  drop_params: false",
                  # /v1/messages to an OpenAI model goes to the upstream's chat completions, as ours does
                  # (LiteLLM's default for OpenAI models is its Responses bridge, which nginx does not serve).
                  "  use_chat_completions_url_for_anthropic_messages: true"]
        return "\n".join(lines) + "\n"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("DATABASE_URL", "REDIS_URL", "LITELLM_MASTER_KEY"):
            env.pop(name, None)
        # No internet in CI-like boxes: use the bundled cost map instead of fetching it at start.
        env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"})
        return env

    def command(self) -> list[str]:
        config = self.workdir / "litellm.yaml"
        config.write_text(self.config_text())
        return [str(self.venv / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1",
                "--port", str(self.port), "--num_workers", str(self.workers)]


def ensure_litellm_venv(venv: Path) -> None:
    """Create bench/.litellm-venv with `litellm[proxy]` if it is not there yet (kept apart from ours)."""
    if (venv / "bin" / "litellm").exists():
        return
    print(f"bench: creating {venv} with litellm[proxy] (one-time, a few minutes)...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
