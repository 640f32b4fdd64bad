"""The setup the integration tests share: a fake upstream or a gateway process that runs for as long as
a block (a fixture) holds it, and the gateway config most of them use, whose provider `up` is a fake
upstream (one key, no retries: a failure shows at once), optionally with the fake Anthropic upstream,
and agents whose tools come from the test MCP server over stdio. The per-module fake upstreams built
on `running` are conftest.py's fixtures.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.threaded import ThreadedServer
from tests.server import SwitchboardProcess

MCP_SERVER = Path(__file__).resolve().parents[1] / "fakes" / "mcp_server.py"
# An agent of the scripted model `small` with the tools of the MCP server `tools` (`tools=True` below).
HELPER_AGENT = {"agents/helper.md": "---\nmodel: small\ntools: [tools]\n---\nYou are the helper agent.\n"}

_Fake = TypeVar("_Fake", bound=ThreadedServer)


@contextmanager
def running(fake: _Fake) -> Iterator[_Fake]:
    """`fake` started, and stopped after the block."""
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@contextmanager
def running_gateway(config: str, **kwargs: Any) -> Iterator[SwitchboardProcess]:
    """A `switchboard serve` process of `config` (`kwargs`: SwitchboardProcess's), stopped after the block."""
    server = SwitchboardProcess(config, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def scripted_config(key: str, upstream: FakeOpenAI, *, other_key: str | None = None,
                    claude: FakeAnthropic | None = None, models: Mapping[str, str] | None = None,
                    tools: bool = False, mcp_servers: Mapping[str, str] | None = None, more: str = "") -> str:
    """The YAML of a gateway with master key `key` and provider `up` (`upstream`).

    `other_key`: a second client key, named `other`. `claude`: provider `claude` (that fake Anthropic
    upstream) and its model `sonnet`. `models`: name -> route (default `small: up/small-model`).
    `tools`: agent files from `agents/`, and the MCP server `tools` (MCP_SERVER over stdio), then
    `mcp_servers` (name -> its YAML flow mapping). `more`: further sections, as YAML.
    """
    auth = f"{{master_key: {key}}}" if other_key is None else \
        f"{{master_key: {key}, keys: [{{name: other, value: {other_key}}}]}}"
    lines = [f"auth: {auth}", "providers:",
             f'  up: {{type: openai, base_url: "{upstream.base_url}", keys: [sk-up], retries: {{max: 0}}}}']
    if claude is not None:
        lines.append(f'  claude: {{type: anthropic, base_url: "{claude.base_url}", keys: [sk-ant], '
                     'retries: {max: 0}}')
    routes = dict(models if models is not None else {"small": "up/small-model"})
    if claude is not None:
        routes["sonnet"] = "claude/claude-sonnet"
    lines += ["models:", *(f"  {name}: {route}" for name, route in routes.items())]
    if tools:
        lines += ["agents: {dir: agents}", "mcp:", "  servers:",
                  f'    tools: {{command: "{sys.executable}", args: ["{MCP_SERVER}"], timeout_s: 10}}',
                  *(f"    {name}: {server}" for name, server in (mcp_servers or {}).items())]
    return "\n".join(lines) + "\n" + more


def script(calls: list[dict[str, Any]], **extra: Any) -> list[dict[str, str]]:
    """The messages that make the scripted upstream (tests/fakes/agent_upstream.py) call `calls`."""
    return [{"role": "user", "content": json.dumps({"calls": calls, **extra})}]
