"""The `mcp:` section: the MCP servers agents may use (`McpServerConfig`: a stdio command or an
HTTP URL), read by `read_mcp_server`, which agent files' own `mcp:` entries share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import _Problems
from .section import _Section


@dataclass(slots=True)
class McpServerConfig:
    name: str
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 60.0



def read_mcp_server(name: str, m: _Section) -> McpServerConfig:
    """One MCP server's keys (`mcp.servers.<name>`, or an agent file's `mcp.<name>`)."""
    cfg = McpServerConfig(
        name=name,
        command=m.get("command", str),
        args=[str(a) for a in (m.str_list("args", []) or [])],
        env=m.str_map("env"),
        cwd=m.get("cwd", str),
        url=m.get("url", str),
        headers=m.str_map("headers"),
        timeout_s=m.positive("timeout_s", float, 60.0),
    )
    if bool(cfg.command) == bool(cfg.url):
        raise m.error(None, f"`{m.path}` needs exactly one of `command` (stdio) or `url` (HTTP)")
    m.done()
    return cfg


def _read_mcp(s: _Section, problems: _Problems) -> dict[str, McpServerConfig]:
    servers: dict[str, McpServerConfig] = {}
    srv = s.section("servers")
    for name in list(srv.items):
        node = srv.node(name)
        assert node is not None
        with problems.guard():
            servers[name] = read_mcp_server(name, srv.sub(node, f"mcp.servers.{name}"))
    srv.done()
    s.done()
    return servers
