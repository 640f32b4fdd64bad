"""Config errors: every error of a file in one run, in line order, each `file:line: message`; YAML
syntax errors name the file and the line; agent files likewise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from switchboard.agents.definitions import load_agents
from switchboard.config import ConfigError, parse_config

MANY_ERRORS = """\
server: {port: eighty, colour: red}
providers:
  openai: {type: openai, timout_s: 5, keys: [sk-1]}
  bad: {type: vertex}
models:
  a: {route: opena/gpt-4o, max_in_flight: -1}
  b: bad/x
  c: {rout: openai/x}
agents: {dri: agents}
"""


def errors_of(text: str, source: str = "sb.yaml") -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(text, source, environ={})
    assert str(err.value) == "\n".join(err.value.errors)
    return err.value.errors


def test_every_error_of_a_file_is_reported_in_line_order() -> None:
    assert errors_of(MANY_ERRORS) == [
        "sb.yaml:1: `server.port` must be int, got str",
        "sb.yaml:1: unknown key `server.colour`",
        "sb.yaml:3: unknown key `providers.openai.timout_s` (did you mean `timeout_s`?)",
        "sb.yaml:4: `providers.bad.type` must be one of openai, anthropic, azure, bedrock",
        "sb.yaml:6: `models.a.max_in_flight` must be > 0",
        "sb.yaml:6: `models.a.route` names unknown provider `opena` (did you mean `openai`?)",
        # models.b routes to the broken provider `bad`: not reported a second time
        "sb.yaml:8: unknown key `models.c.rout` (did you mean `route`?)",
        "sb.yaml:9: unknown key `agents.dri` (did you mean `dir`?)",
    ]


def test_one_error_is_one_error() -> None:
    assert errors_of("server: {port: 80, colour: red}\n") == ["sb.yaml:1: unknown key `server.colour`"]


def test_errors_in_list_items_and_duplicates_are_all_reported() -> None:
    text = """\
auth:
  keys:
    - {name: a}
    - {value: k, modles: ["*"]}
providers:
  p: {type: openai, keys: [{value: x, weight: heavy}]}
  p: {type: openai}
mcp:
  servers:
    s1: {}
    s2: {command: x, timeout_s: 0}
"""
    assert errors_of(text) == [
        "sb.yaml:3: `auth.keys[0].value` is required",
        "sb.yaml:4: unknown key `auth.keys[1].modles` (did you mean `models`?)",
        "sb.yaml:6: `providers.p.keys[0].weight` must be float, got str",
        "sb.yaml:7: duplicate key `p`",
        "sb.yaml:10: `mcp.servers.s1` needs exactly one of `command` (stdio) or `url` (HTTP)",
        "sb.yaml:11: `mcp.servers.s2.timeout_s` must be > 0",
    ]


@pytest.mark.parametrize(("text", "line", "what"), [
    ("server:\n  port: 80\n   host: x\n", 3, "mapping values are not allowed here"),
    ("models:\n  a: {route: p/m\n", 3, "expected ',' or '}'"),
    ("server:\n\tport: 80\n", 2, "found character '\\t' that cannot start any token"),
    ("a: 'unclosed\n", 2, "found unexpected end of stream"),
    ("- a\nb: c\n", 2, "expected <block end>"),
])
def test_yaml_syntax_errors_name_the_file_and_line(text: str, line: int, what: str) -> None:
    (error,) = errors_of(text, "conf/sb.yaml")
    assert error.startswith(f"conf/sb.yaml:{line}: invalid YAML (column ")
    assert what in error


def test_check_config_prints_every_error(tmp_path: Path) -> None:
    path = tmp_path / "sb.yaml"
    path.write_text(MANY_ERRORS)
    out = subprocess.run([sys.executable, "-m", "switchboard.cli", "check-config", str(path)],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    assert lines[0] == "switchboard: 8 config errors:"
    assert lines[1] == f"  {path}:1: `server.port` must be int, got str"
    assert lines[-1] == f"  {path}:9: unknown key `agents.dri` (did you mean `dir`?)"
    assert len(lines) == 9


def test_check_config_prints_a_yaml_syntax_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "sb.yaml"
    path.write_text("providers:\n  up: {type: openai\n")
    out = subprocess.run([sys.executable, "-m", "switchboard.cli", "check-config", str(path)],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 2
    assert out.stderr.startswith(f"switchboard: config error: {path}:3: invalid YAML (column 1): ")


AGENTS_CONFIG = """
providers:
  up: {type: openai, base_url: "http://127.0.0.1:1/v1"}
agents: {dir: agents}
mcp: {servers: {files: {command: "true"}}}
"""


def test_every_error_of_every_agent_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "a.md").write_text(
        "---\nmodel: nowhere\ntools: [files, nope]\nmax_turns: many\nstream: true\n---\nPrompt.\n")
    (tmp_path / "agents" / "b.md").write_text("---\nmodel: up/m\ntemprature: 1\n---\n")
    (tmp_path / "agents" / "c.md").write_text("---\nmodel: up/m\n  bad: [\n---\nPrompt.\n")
    config = parse_config(AGENTS_CONFIG, str(tmp_path / "sb.yaml"), environ={}, base_dir=tmp_path)
    with pytest.raises(ConfigError) as err:
        load_agents(config, lambda m: m.startswith("up/"))
    a, b, c = (str(tmp_path / "agents" / n) for n in ("a.md", "b.md", "c.md"))
    assert err.value.errors == [
        f"{a}:2: `model`: `nowhere` is not a public model name of this gateway (a `models:` alias or `provider/model`)",
        f"{a}:3: `tools`: `nope` names unknown MCP server `nope` (known: files)",
        f"{a}:4: `max_turns` must be int, got str",
        f"{a}:5: `stream` cannot be set in an agent file",
        f"{b}:3: unknown key `temprature` (did you mean `temperature`?)",
        f"{b}: the system prompt (the text after the front matter) is empty",
        f"{c}:3: invalid YAML (column 6): mapping values are not allowed here",
    ]
