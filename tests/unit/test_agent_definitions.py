"""Agent files: parsing, validation errors with file + key + line, defaults, hot reload."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.agents.definitions import AgentRegistry, ToolRef, load_agents
from switchboard.config import ConfigError, parse_config

CONFIG = """
providers:
  up: {type: openai, base_url: "http://127.0.0.1:1/v1"}
models:
  small: up/small
agents: {dir: agents, hot_reload: true}
mcp:
  servers:
    files: {command: "true"}
    web: {url: "http://127.0.0.1:1/mcp"}
"""

GOOD = """---
model: small
tools: [files, web.search]
max_turns: 3
temperature: 0.2
max_tokens: 500
description: Reads files.
max_in_flight: 2
---
You are careful.
"""


def make(tmp_path: Path, files: dict[str, str]) -> object:
    (tmp_path / "agents").mkdir(exist_ok=True)
    for name, text in files.items():
        (tmp_path / "agents" / name).write_text(text)
    return parse_config(CONFIG, str(tmp_path / "switchboard.yaml"), environ={}, base_dir=tmp_path)


def known(model: str) -> bool:
    return model == "small" or model.startswith("up/")


def test_good_agent(tmp_path: Path) -> None:
    config = make(tmp_path, {"reader.md": GOOD, "notes.txt": "ignored"})
    agents = load_agents(config, known)  # type: ignore[arg-type]
    agent = agents["reader"]
    assert agent.model == "small"
    assert agent.tools == [ToolRef("files"), ToolRef("web", "search")]
    assert agent.max_turns == 3 and agent.max_in_flight == 2
    assert agent.defaults == {"temperature": 0.2, "max_tokens": 500}
    assert agent.system_prompt == "You are careful."
    assert agent.model_entry(5) == {"id": "reader", "object": "model", "created": 5, "owned_by": "switchboard-agent",
                                    "description": "Reads files."}


@pytest.mark.parametrize(("text", "line", "needle"), [
    (GOOD.replace("max_turns: 3", "max_turn: 3"), 4, "unknown key `max_turn`"),
    (GOOD.replace("model: small", "model: nope"), 2, "`model`: `nope` is not a public model"),
    (GOOD.replace("[files, web.search]", "[files, mail]"), 3, "unknown MCP server `mail`"),
    (GOOD.replace("max_turns: 3", "max_turns: zero"), 4, "`max_turns` must be int"),
    (GOOD.replace("max_turns: 3", "stream: true"), 4, "`stream` cannot be set in an agent file"),
    (GOOD.replace("model: small\n", ""), 2, "`model` is required"),
    (GOOD.replace("temperature: 0.2", "temperature: [0.2"), 0, "invalid YAML"),
])
def test_bad_agent_names_file_key_and_line(tmp_path: Path, text: str, line: int, needle: str) -> None:
    config = make(tmp_path, {"bad.md": text})
    with pytest.raises(ConfigError) as info:
        load_agents(config, known)  # type: ignore[arg-type]
    message = str(info.value)
    assert str(tmp_path / "agents" / "bad.md") in message
    assert needle in message
    if line:
        assert f"bad.md:{line}:" in message


def test_missing_front_matter_and_empty_prompt(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"a\.md:1: an agent file must start with"):
        load_agents(make(tmp_path, {"a.md": "just text"}), known)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"system prompt .* is empty"):
        load_agents(make(tmp_path, {"a.md": "---\nmodel: small\n---\n\n"}), known)  # type: ignore[arg-type]


def test_agent_name_must_not_shadow_a_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has the name of a model"):
        load_agents(make(tmp_path, {"small.md": GOOD}), known)  # type: ignore[arg-type]


def test_hot_reload_keeps_old_agents_on_error(tmp_path: Path) -> None:
    config = make(tmp_path, {"reader.md": GOOD})
    registry = AgentRegistry(config, known)  # type: ignore[arg-type]
    assert registry.reload_if_changed() is False
    (tmp_path / "agents" / "second.md").write_text(GOOD.replace("You are careful.", "Second."))
    assert registry.reload_if_changed() is True
    assert set(registry.agents) == {"reader", "second"}
    (tmp_path / "agents" / "second.md").write_text("broken")
    assert registry.reload_if_changed() is False
    assert registry.get("second") is not None and registry.get("second").system_prompt == "Second."  # type: ignore[union-attr]
