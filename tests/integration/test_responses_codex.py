"""Codex CLI (`codex exec`, the real binary from npm) end to end through `/v1/responses`.

Codex is configured as a user would (a custom model provider with `wire_api = "responses"` in a
throwaway CODEX_HOME) and talks to the real gateway, bridged to a fake chat upstream that plays the
model (tests/fakes/codex_upstream.py): it asks for a shell command through the tool Codex offers,
Codex runs it in its sandbox, and the answer quotes what the command printed; likewise a patch
through Codex's free-form apply_patch tool, an MCP tool Codex defers behind its client-executed
tool_search, and an image Codex's view_image tool returns. Codex never reaches
the internet: every other host goes to a dead-end proxy on 127.0.0.1 that records what was tried,
and the config turns off what phones home (analytics, plugins sync, update checks, feedback, OTel).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients.node_clients import node_bin, run_client
from tests.fakes.codex_upstream import FakeCodexUpstream
from tests.fakes.dead_end_proxy import DeadEndProxy
from tests.integration.fixtures import MCP_SERVER, running_gateway, scripted_config
from tests.server import SwitchboardProcess

KEY = "sk-codex-test"
# A 2x2 red PNG.
RED_PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJ"
                           "RU5ErkJggg==")
RUN_TIMEOUT = 120.0  # seconds, per `codex exec`
# What keeps Codex off the network besides the model provider (each checked by `--strict-config`).
OFFLINE = """
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"

[features]
plugins = false
"""


@pytest.fixture(scope="module")
def codex() -> Path:
    return node_bin("codex")


@pytest.fixture(scope="module")
def gateway(codex_upstream: FakeCodexUpstream) -> Iterator[SwitchboardProcess]:
    models = {
        "switchboard-coder": "up/coder-model",  # a name Codex does not know: it uses its fallback tool set
        "gpt-5.5": "up/coder-model",  # a name Codex knows: its full tool set (apply_patch, web_search...)
    }
    with running_gateway(scripted_config(KEY, codex_upstream, models=models)) as server:
        yield server


@pytest.fixture
def dead_end() -> Iterator[DeadEndProxy]:
    proxy = DeadEndProxy().start()
    yield proxy
    proxy.stop()


def provider_config(base_url: str, model: str, extra: str = "", top: str = "") -> str:
    """The `config.toml` a user writes to run Codex through the gateway (README, "Codex CLI"); `top`:
    more top-level keys, `extra`: more tables."""
    return f"""model = "{model}"
model_provider = "switchboard"
approval_policy = "never"
sandbox_mode = "workspace-write"
{top}{OFFLINE}
[model_providers.switchboard]
name = "Switchboard"
base_url = "{base_url}"
env_key = "SWITCHBOARD_API_KEY"
wire_api = "responses"
{extra}"""


def codex_exec(codex: Path, gateway: SwitchboardProcess, proxy: DeadEndProxy, prompt: str, model: str,
               extra: str = "", top: str = "") -> tuple[str, Path]:
    """Run `codex exec PROMPT` in a fresh working dir; (its last message, the working dir)."""
    home = Path(tempfile.mkdtemp(prefix="codex-home-"))
    work = Path(tempfile.mkdtemp(prefix="codex-work-"))
    (home / "config.toml").write_text(provider_config(gateway.url + "/v1", model, extra, top))
    last = home / "last-message.txt"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "CODEX_HOME": str(home),
           "SWITCHBOARD_API_KEY": KEY, "HTTPS_PROXY": proxy.url, "HTTP_PROXY": proxy.url, "ALL_PROXY": proxy.url,
           "https_proxy": proxy.url, "http_proxy": proxy.url, "all_proxy": proxy.url,
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "LANG": "C.UTF-8"}
    run_client([codex, "exec", "--strict-config", "--skip-git-repo-check", "--ephemeral", "--color", "never",
                "-C", work, "-o", last, prompt], env=env, timeout=RUN_TIMEOUT, cwd=work)
    assert proxy.requests == [], f"Codex tried to reach other hosts: {proxy.requests}"
    return last.read_text(), work


def access_lines(gateway: SwitchboardProcess, since: int = 0, at_least: int = 0) -> list[dict[str, Any]]:
    """The gateway's access log lines from number `since` on, once there are `at_least` of them (the
    log is written just after the response, so it may lag the client by a moment)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in gateway.logs().splitlines() if line.startswith("{")][since:]
        if len(lines) >= at_least or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def settled_log_length(gateway: SwitchboardProcess) -> int:
    """How many access log lines there are once the earlier requests' lines are all written (the log
    is written in batches just after each response: a line of the previous test may still be on its way)."""
    count = len(access_lines(gateway))
    while True:
        time.sleep(0.3)
        now = len(access_lines(gateway))
        if now == count:
            return count
        count = now


def _since(codex_upstream: FakeCodexUpstream, start: int) -> list[dict[str, Any]]:
    return [r["body"] for r in codex_upstream.requests[start:]]


def _tool_names(body: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools") or ()]


def test_codex_runs_a_shell_command_and_answers(codex: Path, gateway: SwitchboardProcess,
                                                codex_upstream: FakeCodexUpstream, dead_end: DeadEndProxy) -> None:
    start, log_start = len(codex_upstream.requests), settled_log_length(gateway)
    answer, work = codex_exec(codex, gateway, dead_end, "Run: printf codex-was-here > proof.txt && cat proof.txt",
                              model="switchboard-coder")
    assert (work / "proof.txt").read_text() == "codex-was-here"  # the command really ran, in the working dir
    assert answer.startswith("Done. The tool said:") and "codex-was-here" in answer
    first, second = _since(codex_upstream, start)
    assert "exec_command" in _tool_names(first) and first["stream"] is True
    # Codex's namespaced tools (multi_agent_v1.*) are offered flattened, with a reversible name
    assert any(name.startswith("multi_agent_v1__") for name in _tool_names(first))
    call = second["messages"][-2]["tool_calls"][0]
    assert call["function"]["name"] == "exec_command" and call["id"] == "call_codex_1"
    result = second["messages"][-1]
    assert result["role"] == "tool" and result["tool_call_id"] == "call_codex_1"
    assert "codex-was-here" in result["content"]  # the command's output went back to the model
    assert [(line["status"], line["stream"]) for line in access_lines(gateway, log_start, 2)] == [(200, True)] * 2


def test_codex_applies_a_patch_through_its_free_form_tool(codex: Path, gateway: SwitchboardProcess,
                                                          codex_upstream: FakeCodexUpstream,
                                                          dead_end: DeadEndProxy) -> None:
    start = len(codex_upstream.requests)
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+patched through the gateway\n*** End Patch\n"
    answer, work = codex_exec(codex, gateway, dead_end, f"Apply this patch:\n{patch}", model="gpt-5.5")
    assert (work / "hello.txt").read_text() == "patched through the gateway\n"
    assert "Success" in answer and "hello.txt" in answer
    first, second = _since(codex_upstream, start)
    tools = {t["function"]["name"]: t["function"] for t in first["tools"]}
    # apply_patch is a custom (free-form) tool in Codex's request: bridged as a function with one string
    assert tools["apply_patch"]["parameters"]["required"] == ["input"]
    assert "web_search" not in tools  # hosted tools Codex offers are dropped for a bridged upstream
    assert second["messages"][-1]["role"] == "tool" and "hello.txt" in second["messages"][-1]["content"]


def test_codex_finds_its_deferred_mcp_tools_through_tool_search(codex: Path, gateway: SwitchboardProcess,
                                                                 codex_upstream: FakeCodexUpstream,
                                                                 dead_end: DeadEndProxy) -> None:
    """For a model it knows, Codex defers its MCP servers' tools behind a client-executed `tool_search`:
    the model searches, Codex answers with the tools it loaded, and the model calls one of them."""
    mcp = (f'[mcp_servers.testtools]\ncommand = "{sys.executable}"\nargs = ["{MCP_SERVER}"]\n'
           'default_tools_approval_mode = "approve"\n')  # headless: pre-approved
    start = len(codex_upstream.requests)
    # Codex starts the turn after a grace period for its MCP servers, searching only those up by then: on
    # a loaded machine the Python MCP server took longer than the default, and the search found nothing.
    answer, _ = codex_exec(codex, gateway, dead_end, 'Call: add {"a": 2, "b": 40}', model="gpt-5.5", extra=mcp,
                           top="mcp_optional_startup_grace_ms = 60000\n")
    assert answer.startswith("Done. The tool said:") and "42" in answer, answer
    search, loaded, final = _since(codex_upstream, start)
    assert "tool_search" in _tool_names(search) and "mcp__testtools__add" not in _tool_names(search)
    assert search["tools"][_tool_names(search).index("tool_search")]["function"]["parameters"]["required"] == [
        "query"]
    search_call = loaded["messages"][-2]["tool_calls"][0]["function"]
    assert search_call["name"] == "tool_search" and json.loads(search_call["arguments"])["query"] == "add"
    assert loaded["messages"][-1]["role"] == "tool" and "mcp__testtools__add" in loaded["messages"][-1]["content"]
    assert "mcp__testtools__add" in _tool_names(loaded)  # the tools the search loaded are offered from then on
    assert final["messages"][-2]["tool_calls"][0]["function"]["name"] == "mcp__testtools__add"
    assert "42" in final["messages"][-1]["content"]  # Codex ran the MCP tool it found


def test_codex_views_an_image_and_the_model_gets_it(codex: Path, gateway: SwitchboardProcess,
                                                    codex_upstream: FakeCodexUpstream, dead_end: DeadEndProxy,
                                                    tmp_path: Path) -> None:
    """`view_image` answers with an image part in its function_call_output: it reaches the model."""
    image = tmp_path / "red.png"
    image.write_bytes(RED_PNG)
    start = len(codex_upstream.requests)
    answer, _ = codex_exec(codex, gateway, dead_end, f'Call: view_image {{"path": "{image}"}}', model="gpt-5.5")
    assert answer.startswith("Done. The tool said:")
    final = _since(codex_upstream, start)[-1]["messages"]
    assert final[-2]["role"] == "tool" and final[-2]["tool_call_id"] == "call_codex_1"
    parts = final[-1]["content"]
    assert final[-1]["role"] == "user" and parts[0]["text"] == "The output of tool call call_codex_1:"
    assert parts[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(RED_PNG).decode()


def test_codex_falls_back_to_sse_when_the_websocket_is_refused(codex: Path, gateway: SwitchboardProcess,
                                                                codex_upstream: FakeCodexUpstream,
                                                                dead_end: DeadEndProxy) -> None:
    """With `supports_websockets = true` Codex first tries a WebSocket on /v1/responses: the 426 makes it
    use HTTP + SSE for the same turn."""
    log_start = settled_log_length(gateway)
    answer, _ = codex_exec(codex, gateway, dead_end, "Say hello.", model="switchboard-coder",
                           extra="supports_websockets = true\n")
    assert answer.strip() == "Plain answer."
    statuses = [line["status"] for line in access_lines(gateway, log_start, 2)]
    assert statuses[0] == 426 and statuses[-1] == 200, statuses
