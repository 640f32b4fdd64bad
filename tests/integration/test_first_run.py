"""The first run, as a newcomer does it: `switchboard serve` with no config file in an empty directory
(providers from the environment, or none at all), `serve --agent FILE` with the agent's own MCP
server, and `switchboard init` then `check-config` then `serve`. Real processes, fake upstreams that
speak the OpenAI wire format, real MCP servers over stdio."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from switchboard.env_config import NO_PROVIDER_HELP
from tests.fakes.agent_upstream import FakeAgentUpstream
from tests.fakes.openai_upstream import FakeOpenAI

MCP_SERVER = Path(__file__).resolve().parents[1] / "fakes" / "mcp_server.py"
_LISTENING = re.compile(r"listening on http://\S+?:(\d+) ")
_CONVENTIONS = re.compile(r"^(OPENAI_|ANTHROPIC_|OLLAMA_|VLLM_|LMSTUDIO_|SWITCHBOARD_)")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any variable Switchboard reads, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not _CONVENTIONS.match(k)}, **extra}


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchboard.cli", *args], cwd=cwd, env=env or clean_env(),
                          capture_output=True, text=True, timeout=60)


class Serve:
    """`switchboard serve ARGS` in `cwd` (no --config unless ARGS say so), on a free port."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str]) -> None:
        self.cwd, self.args, self.env = cwd, args, env
        self.port = 0
        self.log_path = cwd.parent / f"{cwd.name}-serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Serve:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "switchboard.cli", "serve", "--port", "0", *self.args],
                                     cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"switchboard exited early:\n{self.logs()}")
            if not self.port and (found := _LISTENING.search(self.logs())) is not None:
                self.port = int(found.group(1))
            if self.port:
                try:
                    if httpx.get(self.url + "/health", timeout=0.5).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"switchboard did not start:\n{self.logs()}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def one_paragraph(text: str) -> str:
    return " ".join(text.split())


def chat(server: Serve, model: str, content: str, key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.url + "/v1/chat/completions", headers=headers, timeout=60,
                      json={"model": model, "messages": [{"role": "user", "content": content}]})


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "fresh"
    directory.mkdir()
    return directory


@pytest.fixture(scope="module")
def agent_upstream() -> Iterator[FakeAgentUpstream]:
    fake = FakeAgentUpstream().start()
    yield fake
    fake.stop()


def test_serve_without_a_config_file_serves_the_providers_of_the_environment(
        empty_dir: Path, fake_openai: FakeOpenAI) -> None:
    env = clean_env(OPENAI_API_KEY="sk-upstream-from-env", OPENAI_BASE_URL=fake_openai.base_url,
                    SWITCHBOARD_MASTER_KEY="sk-first-run-master")
    with Serve(empty_dir, env=env) as server:
        assert httpx.get(server.url + "/health").status_code == 200
        auth = {"authorization": "Bearer sk-first-run-master"}
        models = httpx.get(server.url + "/v1/models", headers=auth).json()["data"]
        assert {"openai/fake-large", "openai/fake-small"} <= {m["id"] for m in models}  # list_models: true

        r = chat(server, "openai/gpt-4o-mini", "hi", key="sk-first-run-master")
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "Hello from gpt-4o-mini"
        sent = fake_openai.last()
        assert sent["body"]["model"] == "gpt-4o-mini"
        assert sent["headers"]["Authorization"] == "Bearer sk-upstream-from-env"

        assert chat(server, "openai/gpt-4o-mini", "hi").status_code == 401  # SWITCHBOARD_MASTER_KEY: auth is on
        logs = server.logs()
    banner = logs[logs.index("Switchboard: "):]
    assert "(config: none: the environment (no switchboard.yaml here))" in banner
    assert "auth:   on (master key" in banner
    assert "models: any <provider>/<model> of openai (listed in /v1/models)" in banner
    assert "agents: none" in banner
    assert f"store:  SQLite {empty_dir.resolve() / 'switchboard.db'}" in banner
    assert (empty_dir / "switchboard.db").exists()  # SQLite in the working directory
    assert "No provider is configured" not in logs
    assert "sk-upstream-from-env" not in logs and "sk-first-run-master" not in logs


def test_serve_with_nothing_in_the_environment_starts_and_says_how_to_add_a_provider(empty_dir: Path) -> None:
    with Serve(empty_dir, env=clean_env()) as server:
        assert httpx.get(server.url + "/health").status_code == 200
        assert httpx.get(server.url + "/v1/models").json() == {"object": "list", "data": []}
        r = chat(server, "openai/gpt-4o-mini", "hi")
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        logs = server.logs()
    assert one_paragraph(NO_PROVIDER_HELP) in one_paragraph(logs)
    assert "models: none (no provider configured)" in logs
    assert "auth:   OFF" in logs

    checked = cli(empty_dir, "check-config")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("config OK: (environment)\n")
    assert one_paragraph(NO_PROVIDER_HELP) in one_paragraph(checked.stdout)


def script(calls: list[dict[str, Any]]) -> str:
    return json.dumps({"calls": calls})


def test_serve_one_agent_file_with_its_own_mcp_server_and_an_environment_model(
        tmp_path: Path, agent_upstream: FakeAgentUpstream) -> None:
    project = tmp_path / "project"
    (project / "agents").mkdir(parents=True)
    shutil.copy(MCP_SERVER, project / "agents" / "mcp_server.py")  # next to the agent: its path is relative to it
    (project / "agents" / "chat.md").write_text("""---
model: openai/small-model
description: Chat with tools.
mcp:
  tools: {command: python, args: [mcp_server.py], timeout_s: 20}
max_in_flight: 50
---
You are the chat agent.
""")
    env = clean_env(OPENAI_API_KEY="sk-up", OPENAI_BASE_URL=agent_upstream.base_url)
    with Serve(project, "--agent", "agents/chat.md", "--concurrency", "1", env=env) as server:
        models = {m["id"]: m for m in httpx.get(server.url + "/v1/models").json()["data"]}
        assert models["chat"]["owned_by"] == "switchboard-agent"
        assert models["chat"]["description"] == "Chat with tools."

        before = len(agent_upstream.requests)
        r = chat(server, "chat", script([{"name": "add", "arguments": {"a": 2, "b": 3}}]))
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "Tool said: 5"
        first = agent_upstream.requests[before]["body"]
        assert first["model"] == "small-model"
        assert first["messages"][0] == {"role": "system", "content": "You are the chat agent."}
        assert "add" in {t["function"]["name"] for t in first["tools"]}

        # --concurrency 1 (over the file's max_in_flight: 50): a second request waits for the first to finish
        slow = script([{"name": "slow", "arguments": {"seconds": 1.0}}])
        before = len(agent_upstream.requests)
        answers: dict[str, httpx.Response] = {}
        first_call = threading.Thread(target=lambda: answers.__setitem__("slow", chat(server, "chat", slow)))
        first_call.start()
        deadline = time.monotonic() + 20
        while len(agent_upstream.requests) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        second_call = threading.Thread(target=lambda: answers.__setitem__("plain", chat(server, "chat", "hello")))
        second_call.start()
        first_call.join(60)
        second_call.join(60)
        assert answers["slow"].json()["choices"][0]["message"]["content"] == "Tool said: slept 1.0"
        assert answers["plain"].json()["choices"][0]["message"]["content"] == "Plain answer."
        asked = [r["body"]["messages"][-1]["content"] for r in agent_upstream.requests[before:]
                 if r["path"] == "/v1/chat/completions"]
        # without the limit the second request's model call would land while the first's tool sleeps
        assert [a if a == "hello" else "tool result" if "slept" in a else "script" for a in asked] == [
            "script", "tool result", "hello"]
        logs = server.logs()
    assert "agents: chat (model openai/small-model; tools tools; max_in_flight 1)" in logs
    assert "MCP server tools: connected" in logs


def test_agent_with_an_unknown_model_and_no_provider_says_how_to_add_one(empty_dir: Path) -> None:
    (empty_dir / "chat.md").write_text("---\nmodel: openai/gpt-4o-mini\n---\nHi.\n")
    out = subprocess.run([sys.executable, "-m", "switchboard.cli", "serve", "--agent", "chat.md", "--port", "0"],
                         cwd=empty_dir, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert (f"switchboard: config error: {empty_dir.resolve() / 'chat.md'}:2: `model`: `openai/gpt-4o-mini` is not "
            "a public model name") in out.stderr
    assert one_paragraph(NO_PROVIDER_HELP) in one_paragraph(out.stderr)


def test_concurrency_needs_an_agent_and_an_agent_file_must_exist(empty_dir: Path) -> None:
    out = cli(empty_dir, "serve", "--concurrency", "3")
    assert out.returncode == 2 and "--concurrency sets the max_in_flight of the --agent file" in out.stderr
    out = cli(empty_dir, "serve", "--agent", "agents/nope.md")
    assert out.returncode == 2 and "switchboard: --agent agents/nope.md: no such file" in out.stderr


def test_init_then_check_config_then_serve(empty_dir: Path, agent_upstream: FakeAgentUpstream) -> None:
    out = cli(empty_dir, "init")
    assert out.returncode == 0, out.stderr
    written = ["switchboard.yaml", "agents/assistant.md", "agents/toolbox.py"]
    assert out.stdout.splitlines()[:3] == [f"wrote   {name}" for name in written]
    assert all((empty_dir / name).is_file() for name in written)

    checked = cli(empty_dir, "check-config")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("config OK: switchboard.yaml\n")
    assert "model chat: openai/gpt-4o-mini" in checked.stdout
    assert "agents: agents: assistant" in checked.stdout

    # what init wrote serves: the example agent thinks with `chat` and calls the starter MCP server's tool;
    # `command: python` is the gateway's own interpreter, so no `python` on PATH is needed (Debian has none)
    no_python = empty_dir.parent / "bin-without-python"
    no_python.mkdir()
    env = clean_env(OPENAI_API_KEY="sk-up", OPENAI_BASE_URL=agent_upstream.base_url, PATH=str(no_python))
    with Serve(empty_dir, env=env) as server:
        before = len(agent_upstream.requests)
        r = chat(server, "assistant", script([{"name": "calculate", "arguments": {"expression": "(2+3)*4"}}]))
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "Tool said: 20"
        assert agent_upstream.requests[before]["body"]["model"] == "gpt-4o-mini"
        assert "(config: switchboard.yaml)" in server.logs()

    # init again never overwrites: it says which files it skipped, and writes only what is missing
    (empty_dir / "switchboard.yaml").write_text("# mine\n")
    (empty_dir / "agents" / "toolbox.py").unlink()
    again = cli(empty_dir, "init")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[:3] == [
        "skipped switchboard.yaml (exists)",
        "skipped agents/assistant.md (exists)",
        "wrote   agents/toolbox.py",
    ]
    assert (empty_dir / "switchboard.yaml").read_text() == "# mine\n"
