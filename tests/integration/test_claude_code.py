"""Claude Code itself (`claude -p`, the pinned npm package in tests/clients/claude/, installed by
.ci/run) against the gateway's `/v1/messages`, routed to a fake OpenAI-format upstream: plain text,
a tool loop that really writes a file, and `--output-format stream-json`. Claude Code runs with a
throwaway HOME, telemetry and non-essential traffic off, and every other host behind a proxy on a
closed local port, so nothing leaves the machine. The model ids it asks for change with its
versions: a first run against a gateway without aliases reads them from its requests (the access
log's 404s), then they are aliased to the fake's model.

Skipped when the binary is not installed, unless SWITCHBOARD_REQUIRE_CLAUDE_CODE=1 (CI sets it)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.agent_upstream import FakeAgentUpstream
from tests.fakes.agent_upstream import decide as scripted_decide
from tests.server import SwitchboardProcess, free_port

CLIENT_DIR = Path(__file__).resolve().parents[1] / "clients" / "claude" / "node_modules" / "@anthropic-ai"
CANDIDATES = [CLIENT_DIR / "claude-code" / "bin" / "claude.exe", CLIENT_DIR / "claude-code-linux-x64" / "claude",
              CLIENT_DIR / "claude-code-linux-arm64" / "claude"]
KEY = "sk-claude-code-gateway-key"
RUN_TIMEOUT_S = 90


def _binary() -> Path | None:
    for path in CANDIDATES:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


BINARY = _binary()
if BINARY is None and os.environ.get("SWITCHBOARD_REQUIRE_CLAUDE_CODE") != "1":
    pytest.skip("Claude Code is not installed (npm ci --prefix tests/clients/claude)", allow_module_level=True)


def _claude_decide(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The agent fake's script, found in the last user message even after Claude Code's reminders
    (its user turns start with a <system-reminder> text block)."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user" and isinstance(messages[i].get("content"), str):
            content = messages[i]["content"]
            start = content.find("\n{")
            if start >= 0:
                messages = [*messages[:i], {**messages[i], "content": content[start + 1:]}, *messages[i + 1:]]
            break
    return scripted_decide(messages)


class ClaudeCodeUpstream(FakeAgentUpstream):
    def decide(self, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        return _claude_decide(body.get("messages") or [])


@pytest.fixture(scope="module")
def upstream() -> Iterator[ClaudeCodeUpstream]:
    fake = ClaudeCodeUpstream().start()
    yield fake
    fake.stop()


def _config(upstream: ClaudeCodeUpstream, aliases: list[str]) -> str:
    models = "".join(f"  {json.dumps(m)}: {{route: up/fake-coder}}\n" for m in [*aliases, "placeholder"])
    return f"""
auth: {{master_key: {KEY}}}
providers:
  up: {{type: openai, base_url: "{upstream.base_url}", keys: [sk-up], retries: {{max: 0}}}}
models:
{models}"""


def _access(gateway: SwitchboardProcess) -> list[dict[str, Any]]:
    lines = []
    for line in gateway.logs().splitlines():
        if line.startswith('{"ts"'):
            lines.append(json.loads(line))
    return lines


def claude(gateway: SwitchboardProcess, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert BINARY is not None
    home = Path(tempfile.mkdtemp(prefix="claude-home-"))
    dead_end = f"http://127.0.0.1:{free_port()}"  # nothing listens there: any other host fails at once
    env = {
        "PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
        "ANTHROPIC_BASE_URL": gateway.url, "ANTHROPIC_API_KEY": KEY,
        "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_NON_ESSENTIAL_MODEL_CALLS": "1",
        "CLAUDE_CODE_ENABLE_TELEMETRY": "0",
        "HTTPS_PROXY": dead_end, "HTTP_PROXY": dead_end, "https_proxy": dead_end, "http_proxy": dead_end,
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    }
    return subprocess.run([str(BINARY), "-p", *args], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


@pytest.fixture(scope="module")
def gateway(upstream: ClaudeCodeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwitchboardProcess]:
    discovery = SwitchboardProcess(_config(upstream, [])).start()
    try:
        claude(discovery, tmp_path_factory.mktemp("discover"), "Say hi", "--output-format", "json")
        asked = sorted({e["model"] for e in _access(discovery) if e.get("endpoint") == "/messages" and e["model"]})
    finally:
        discovery.stop()
    assert asked, f"Claude Code sent no /v1/messages request:\n{discovery.logs()[-3000:]}"
    server = SwitchboardProcess(_config(upstream, asked)).start()
    yield server
    server.stop()


def _messages_requests(upstream: ClaudeCodeUpstream, since: int) -> list[dict[str, Any]]:
    return [r["body"] for r in upstream.requests[since:] if r["path"] == "/v1/chat/completions"]


def _no_client_errors(gateway: SwitchboardProcess) -> None:
    bad = [e for e in _access(gateway) if 400 <= e["status"] < 500]
    assert not bad, bad


def _check_upstream_bodies(bodies: list[dict[str, Any]]) -> None:
    assert bodies
    for body in bodies:
        text = json.dumps(body)
        assert "x-anthropic-billing-header" not in text
        assert "defer_loading" not in text
        assert all(t["function"]["name"] != "DeferredToolPlaceholder" for t in body.get("tools") or ())
        roles = [m["role"] for m in body["messages"]]
        assert "system" in roles and set(roles) <= {"system", "user", "assistant", "tool"}
        assert "thinking" not in body and "output_config" not in body and "context_management" not in body


def test_plain_text(gateway: SwitchboardProcess, upstream: ClaudeCodeUpstream, tmp_path: Path) -> None:
    since = len(upstream.requests)
    done = claude(gateway, tmp_path, "Say hi", "--output-format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["result"] == "Plain answer." and result["is_error"] is False
    bodies = _messages_requests(upstream, since)
    _check_upstream_bodies(bodies)
    # Claude Code's environment block is a system turn after the user's: it stays there.
    main = bodies[-1]["messages"]
    assert main[0]["role"] == "system" and any(m["role"] == "system" for m in main[1:])
    _no_client_errors(gateway)


def test_tool_loop_writes_a_file(gateway: SwitchboardProcess, upstream: ClaudeCodeUpstream, tmp_path: Path) -> None:
    target = tmp_path / "hello.txt"
    script = {"calls": [{"name": "Write", "arguments": {"file_path": str(target), "content": "written by the fake\n"}}],
              "answer": "The file is written."}
    since = len(upstream.requests)
    done = claude(gateway, tmp_path, json.dumps(script), "--output-format", "json", "--allowedTools", "Write")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["result"] == "The file is written."
    assert target.read_text() == "written by the fake\n"
    bodies = _messages_requests(upstream, since)
    _check_upstream_bodies(bodies)
    assert any(m["role"] == "tool" for m in bodies[-1]["messages"])  # the Write result went back
    _no_client_errors(gateway)


def test_stream_json(gateway: SwitchboardProcess, upstream: ClaudeCodeUpstream, tmp_path: Path) -> None:
    done = claude(gateway, tmp_path, "Say hi", "--output-format", "stream-json", "--verbose")
    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert events[-1]["type"] == "result" and events[-1]["result"] == "Plain answer."
    assert any(e["type"] == "assistant" for e in events)
    _no_client_errors(gateway)
