"""An agent file's own MCP servers (`mcp:` in its front matter): read as `mcp.servers` entries, run
from the agent file's directory, its tools by default, merged with the config's for the MCP pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.agents.definitions import AgentRegistry, ToolRef, load_agents
from switchboard.config import Config, ConfigError, McpServerConfig, parse_config

CONFIG = """
providers:
  up: {type: openai, base_url: "http://127.0.0.1:1/v1"}
agents: {dir: agents}
mcp: {servers: {shared: {url: "http://127.0.0.1:1/mcp"}}}
"""


def known(model: str) -> bool:
    return model.startswith("up/")


def setup(tmp_path: Path, files: dict[str, str]) -> Config:
    for name, text in files.items():
        path = tmp_path / "agents" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return parse_config(CONFIG, str(tmp_path / "switchboard.yaml"), environ={}, base_dir=tmp_path)


def test_own_servers_run_from_the_agent_files_directory_and_are_its_tools(tmp_path: Path) -> None:
    config = setup(tmp_path, {"chat.md": """---
model: up/m
mcp:
  notes: {command: python, args: [notes_server.py], env: {NOTES_FILE: notes.json}}
  data: {command: ./run.sh, cwd: ../data, timeout_s: 5}
---
Prompt.
"""})
    agent = load_agents(config, known)["chat"]
    agents_dir = str((tmp_path / "agents").resolve())
    assert agent.mcp_servers == {
        "notes": McpServerConfig(name="notes", command="python", args=["notes_server.py"],
                                 env={"NOTES_FILE": "notes.json"}, cwd=agents_dir),
        "data": McpServerConfig(name="data", command="./run.sh", cwd=str((tmp_path / "data").resolve()),
                                timeout_s=5.0),
    }
    assert agent.tools == [ToolRef("notes"), ToolRef("data")]  # no `tools`: every server of its own


def test_tools_may_pick_from_own_and_config_servers(tmp_path: Path) -> None:
    config = setup(tmp_path, {"chat.md": """---
model: up/m
mcp: {notes: {command: python, args: [s.py]}}
tools: [notes.save_note, shared]
---
Prompt.
"""})
    assert load_agents(config, known)["chat"].tools == [ToolRef("notes", "save_note"), ToolRef("shared")]


@pytest.mark.parametrize(("front_matter", "message"), [
    ("mcp: {notes: {args: [x]}}", ":3: `mcp.notes` needs exactly one of `command` (stdio) or `url` (HTTP)"),
    ("mcp: {notes: {command: x, comand: y}}", ":3: unknown key `mcp.notes.comand` (did you mean `command`?)"),
    ("mcp: {shared: {command: x}}", ":3: `mcp.shared`: the config's `mcp.servers` has a server of that name"),
    ("mcp: {a.b: {command: x}}", ":3: `mcp.a.b`: an MCP server name is letters, digits, `_` and `-`"),
    ("mcp: [x]", ":3: `mcp` must be a mapping"),
    ("mcp: {notes: {command: x}}\ntools: [shared]",
     ":4: `tools` does not name `notes`, declared in this file's `mcp`"),
])
def test_front_matter_mcp_errors(tmp_path: Path, front_matter: str, message: str) -> None:
    config = setup(tmp_path, {"chat.md": f"---\nmodel: up/m\n{front_matter}\n---\nPrompt.\n"})
    with pytest.raises(ConfigError) as err:
        load_agents(config, known)
    assert message in str(err.value)
    assert str(err.value).startswith(str(tmp_path / "agents" / "chat.md"))


def test_registry_merges_agents_servers_with_the_configs(tmp_path: Path) -> None:
    same = "---\nmodel: up/m\nmcp: {notes: {command: python, args: [s.py]}}\n---\nPrompt.\n"
    config = setup(tmp_path, {"a.md": same, "b.md": same})
    registry = AgentRegistry(config, known)
    assert sorted(registry.mcp_servers) == ["notes", "shared"]  # a server declared alike by two agents runs once
    assert registry.mcp_servers["notes"].cwd == str((tmp_path / "agents").resolve())


def test_two_agents_declaring_one_name_differently_is_an_error(tmp_path: Path) -> None:
    config = setup(tmp_path, {
        "a.md": "---\nmodel: up/m\nmcp: {notes: {command: python, args: [s.py]}}\n---\nPrompt.\n",
        "b.md": "---\nmodel: up/m\nmcp: {notes: {command: python, args: [other.py]}}\n---\nPrompt.\n",
    })
    with pytest.raises(ConfigError, match=r"b\.md: MCP server `notes` is also declared, differently, by .*a\.md"):
        load_agents(config, known)


def test_serve_one_agent_file_with_its_concurrency(tmp_path: Path) -> None:
    config = setup(tmp_path, {"a.md": "---\nmodel: up/m\nmax_in_flight: 50\n---\nA.\n", "elsewhere/b.md":
                              "---\nmodel: up/m\nmcp: {t: {command: python, args: [t.py]}}\n---\nB.\n"})
    config.agents_dir = None
    config.agent_file = tmp_path / "agents" / "elsewhere" / "b.md"
    config.agent_max_in_flight = 3
    registry = AgentRegistry(config, known)
    assert list(registry.agents) == ["b"]
    assert registry.agents["b"].max_in_flight == 3
    assert registry.mcp_servers["t"].cwd == str((tmp_path / "agents" / "elsewhere").resolve())
    config.agent_max_in_flight = None
    assert load_agents(config, known)["b"].max_in_flight is None


def test_hot_reload_keeps_the_agents_when_their_mcp_servers_change(tmp_path: Path) -> None:
    config = setup(tmp_path, {"a.md": "---\nmodel: up/m\nmcp: {t: {command: python, args: [t.py]}}\n---\nA.\n"})
    registry = AgentRegistry(config, known)
    path = tmp_path / "agents" / "a.md"
    path.write_text("---\nmodel: up/m\nmcp: {t: {command: python, args: [changed.py]}}\n---\nA2.\n")
    import os

    os.utime(path, ns=(1, 1))  # a different mtime whatever the clock's resolution
    assert registry.reload_if_changed() is False
    assert registry.agents["a"].system_prompt == "A."
