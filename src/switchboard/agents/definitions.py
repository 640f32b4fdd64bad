"""Agent files: one Markdown file per agent, YAML front matter + system prompt; the file name is the model name.

Owns parsing and validating agent files (errors name the file, the key and its line, as config
errors do; every error of a file is reported at once), and the `AgentRegistry` that holds the
current set (the files of `agents.dir`, or the one file of `serve --agent`) and optionally reloads
it when the files change (a cheap mtime poll). Front-matter keys: `model` (required, a public model
name), `mcp` (MCP servers of this agent: the keys of `mcp.servers`, paths relative to the agent
file), `tools` (MCP server names or `server.tool`; default: every server of the agent's `mcp`),
`max_turns`, `description`, `max_in_flight`, `queue`; any OpenAI chat parameter (`temperature`,
`max_tokens`, ...) becomes a default the client may override. The registry also merges the
agents' own MCP servers with the config's (`mcp_servers`), for the MCP pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import (
    Config,
    ConfigError,
    McpServerConfig,
    _load_nodes,
    _plain,
    _Problems,
    _Section,
    read_mcp_server,
)
from ..openai_fields import CHAT_FIELDS

__all__ = ["AgentDefinition", "AgentRegistry", "ToolRef", "load_agents", "mcp_servers_of", "parse_agent"]

log = logging.getLogger("switchboard.agents")

DEFAULT_MAX_TURNS = 8
# Chat parameters an agent file may not set: the gateway or the client owns them.
_NOT_DEFAULTS = frozenset({"messages", "model", "stream", "stream_options", "tools", "n", "functions",
                           "function_call"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # no `.`: `tools` entries are `server.tool`
_FRONT_MATTER_END = re.compile(r"^---\s*$", re.MULTILINE)


@dataclass(slots=True, frozen=True)
class ToolRef:
    """`server` (all its tools) or `server.tool`."""

    server: str
    tool: str | None = None


@dataclass(slots=True)
class AgentDefinition:
    name: str
    model: str
    system_prompt: str
    tools: list[ToolRef] = field(default_factory=list)
    max_turns: int = DEFAULT_MAX_TURNS
    description: str | None = None
    max_in_flight: int | None = None
    queue: int | None = None
    defaults: dict[str, Any] = field(default_factory=dict)  # OpenAI chat parameters; the client's win
    path: str = ""
    mcp_servers: dict[str, McpServerConfig] = field(default_factory=dict)  # its front matter's `mcp`

    def model_entry(self, created: int) -> dict[str, Any]:
        """The `/v1/models` object of this agent."""
        entry: dict[str, Any] = {"id": self.name, "object": "model", "created": created,
                                 "owned_by": "switchboard-agent"}
        if self.description:
            entry["description"] = self.description
        return entry


def _split(text: str, source: str) -> tuple[str, str]:
    """(front matter YAML, padded so its line numbers are the file's; body)."""
    if not text.startswith("---"):
        raise ConfigError(f"{source}:1: an agent file must start with a `---` line (YAML front matter)")
    first_newline = text.find("\n")
    if first_newline < 0 or text[:first_newline].strip() != "---":
        raise ConfigError(f"{source}:1: an agent file must start with a `---` line (YAML front matter)")
    end = _FRONT_MATTER_END.search(text, first_newline + 1)
    if end is None:
        raise ConfigError(f"{source}:1: the front matter is not closed by a `---` line")
    yaml_text = "\n" + text[first_newline + 1:end.start()]  # the blank line stands for the opening `---`
    return yaml_text, text[end.end():].strip()


def parse_agent(name: str, text: str, source: str, config: Config,
                known_model: Callable[[str], bool], environ: dict[str, str] | None = None) -> AgentDefinition:
    """Parse one agent file; its problems, all of them, are one `ConfigError` naming `source`, keys and lines."""
    yaml_text, body = _split(text, source)
    problems = _Problems()
    env = dict(os.environ) if environ is None else environ
    s = _Section(_load_nodes(yaml_text, source, env, problems), "", source, problems)
    model = ""
    with problems.guard():
        model = s.get("model", str, required=True)
        if not known_model(model):
            hint = "" if config.providers else " (no provider is configured: see `switchboard serve`'s help)"
            s.report(s.items.get("model"), f"`model`: `{model}` is not a public model name of this gateway "
                                           f"(a `models:` alias or `provider/model`){hint}")
    servers = _own_mcp_servers(s, config, Path(source).resolve().parent, problems)
    tools: list[ToolRef] = []
    tools_node = s.items.get("tools")
    for entry in s.str_list("tools", list(servers)) or []:
        server, _, tool = entry.partition(".")
        if server not in config.mcp_servers and server not in servers:
            known = ", ".join(sorted({*config.mcp_servers, *servers})) or "none configured"
            s.report(tools_node, f"`tools`: `{entry}` names unknown MCP server `{server}` (known: {known})")
            continue
        tools.append(ToolRef(server, tool or None))
    for server in servers:
        if all(ref.server != server for ref in tools):
            s.report(tools_node, f"`tools` does not name `{server}`, declared in this file's `mcp`; "
                                 "add it or remove the server")
    max_turns = s.positive("max_turns", int, DEFAULT_MAX_TURNS)
    description = s.get("description", str)
    max_in_flight = s.positive("max_in_flight", int, None)
    queue = s.positive("queue", int, None, allow_zero=True)
    defaults: dict[str, Any] = {}
    for key, node in s.items.items():
        if key in s.seen:
            continue
        if key in CHAT_FIELDS and key not in _NOT_DEFAULTS:
            defaults[key] = _plain(node)
            s.seen.add(key)
        elif key in _NOT_DEFAULTS:
            s.report(node, f"`{key}` cannot be set in an agent file")
            s.seen.add(key)
    s.done(also_known=sorted(CHAT_FIELDS.keys() - _NOT_DEFAULTS))
    if not body:
        problems.add(ConfigError(f"{source}: the system prompt (the text after the front matter) is empty"))
    problems.raise_any()
    return AgentDefinition(name=name, model=model, system_prompt=body, tools=tools, max_turns=max_turns,
                           description=description, max_in_flight=max_in_flight, queue=queue,
                           defaults=defaults, path=source, mcp_servers=servers)


def _own_mcp_servers(s: _Section, config: Config, agent_dir: Path,
                     problems: _Problems) -> dict[str, McpServerConfig]:
    """The front matter's `mcp`: servers as in `mcp.servers`, run from the agent file's directory."""
    node = s.node("mcp")
    servers: dict[str, McpServerConfig] = {}
    if node is None or node.value is None:
        return servers
    with problems.guard():
        m = s.sub(node, "mcp")
        for name in list(m.items):
            entry = m.node(name)
            assert entry is not None
            if not _SERVER_NAME.match(name):
                m.report(entry, f"`mcp.{name}`: an MCP server name is letters, digits, `_` and `-`")
                continue
            if name in config.mcp_servers:
                m.report(entry, f"`mcp.{name}`: the config's `mcp.servers` has a server of that name; "
                                "rename one (or use the config's with `tools: [" + name + "]`)")
                continue
            with problems.guard():
                server = read_mcp_server(name, m.sub(entry, f"mcp.{name}"))
                # Relative paths (`args: [server.py]`, `cwd`) are the agent file's: the child runs there.
                server.cwd = str((agent_dir / (server.cwd or ".")).resolve())
                servers[name] = server
    return servers



def _agent_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.md") if p.is_file())


def agents_dir(config: Config) -> Path | None:
    if not config.agents_dir:
        return None
    return (config.base_dir / config.agents_dir).resolve()


def _agent_paths(config: Config) -> list[Path]:
    if config.agent_file is not None:
        return [(config.base_dir / config.agent_file).resolve()]
    directory = agents_dir(config)
    if directory is None:
        return []
    if not directory.is_dir():
        raise ConfigError(f"agents.dir: `{directory}` is not a directory")
    return _agent_files(directory)


def load_agents(config: Config, known_model: Callable[[str], bool]) -> dict[str, AgentDefinition]:
    """Every agent of `config.agents_dir` (relative to the config file), or the one `config.agent_file`;
    `{}` when none is configured. The errors of every file are reported together."""
    agents: dict[str, AgentDefinition] = {}
    problems = _Problems()
    for path in _agent_paths(config):
        name = path.stem
        source = str(path)
        with problems.guard():
            if not _NAME.match(name):
                raise ConfigError(f"{source}: the file name `{name}` is not a valid model name "
                                  "(letters, digits, `.`, `_`, `-`)")
            if name in config.models:
                raise ConfigError(f"{source}: agent `{name}` has the name of a model in `models:`; rename one of them")
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{source}: cannot read agent file: {exc}") from None
            agent = parse_agent(name, text, source, config, known_model)
            if config.agent_max_in_flight is not None:
                agent.max_in_flight = config.agent_max_in_flight
            agents[name] = agent
    with problems.guard():
        mcp_servers_of(config, agents)
    problems.raise_any(by_line=False)
    return agents


def mcp_servers_of(config: Config, agents: dict[str, AgentDefinition]) -> dict[str, McpServerConfig]:
    """The config's `mcp.servers` plus the agents' own; agents may share a server only if declared alike."""
    servers = dict(config.mcp_servers)
    declared_by: dict[str, str] = {}
    for agent in agents.values():
        for name, server in agent.mcp_servers.items():
            if name in declared_by and servers[name] != server:
                raise ConfigError(f"{agent.path}: MCP server `{name}` is also declared, differently, by "
                                  f"{declared_by[name]}; rename one of them")
            servers[name] = server
            declared_by.setdefault(name, agent.path)
    return servers


def _snapshot(directory: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for path in _agent_files(directory):
            with contextlib.suppress(OSError):
                out[path.name] = path.stat().st_mtime_ns
    return out


class AgentRegistry:
    """The current agents; with `agents.hot_reload` a poll task re-reads them when a file changes.

    A reload that fails keeps the previous agents and logs the error (a typo must not take agents down).
    """

    def __init__(self, config: Config, known_model: Callable[[str], bool], poll_s: float = 2.0) -> None:
        self.config = config
        self._known_model = known_model
        self.agents = load_agents(config, known_model)
        self.mcp_servers = mcp_servers_of(config, self.agents)  # the MCP pool's servers, fixed at startup
        self._dir = agents_dir(config) if config.agent_file is None else None
        self._stamp = _snapshot(self._dir) if self._dir is not None else {}
        self._poll_s = poll_s
        self._task: asyncio.Task[None] | None = None

    def get(self, name: str) -> AgentDefinition | None:
        return self.agents.get(name)

    def model_entries(self, created: int) -> list[dict[str, Any]]:
        return [agent.model_entry(created) for agent in self.agents.values()]

    def reload_if_changed(self) -> bool:
        """Re-read the agent files if any was added, removed or modified; True if the set was replaced."""
        if self._dir is None:
            return False
        stamp = _snapshot(self._dir)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            agents = load_agents(self.config, self._known_model)
        except ConfigError as exc:
            log.error("agent files changed but could not be loaded; keeping the previous agents: %s", exc)
            return False
        if mcp_servers_of(self.config, agents) != self.mcp_servers:
            log.error("agent files changed their `mcp` servers, which start with the gateway: restart to apply; "
                      "keeping the previous agents")
            return False
        self.agents = agents
        log.info("agents reloaded: %s", ", ".join(sorted(agents)) or "none")
        return True

    async def start(self) -> None:
        if self.config.agents_hot_reload and self._dir is not None and self._task is None:
            self._task = asyncio.create_task(self._poll(), name="agents-hot-reload")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            self.reload_if_changed()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
