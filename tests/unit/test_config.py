from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from switchboard.config import ConfigError, parse_config

BASE = """
providers:
  openai:
    type: openai
    base_url: https://api.openai.com/v1
    keys:
      - {value: "${OPENAI_API_KEY}", weight: 0.7}
      - {value: "${OPENAI_API_KEY_2}", weight: 0.3, models: [gpt-4o-mini]}
models:
  gpt-4o-mini:
    route: openai/gpt-4o-mini
"""


def test_design_example_parses() -> None:
    text = (Path(__file__).parents[2] / "examples" / "switchboard.yaml").read_text()
    cfg = parse_config(text, environ={"OPENAI_API_KEY": "sk-a", "ANTHROPIC_API_KEY": "sk-ant"})
    assert cfg.providers["openai"].keys[0].value == "sk-a"
    assert cfg.models["gpt-4o-mini"].fallbacks == ["claude/claude-3-5-haiku-latest"]


def test_env_expansion_and_defaults() -> None:
    text = BASE + "server:\n  port: ${PORT:-9090}\n  host: '${HOST:-0.0.0.0}'\n"
    cfg = parse_config(text, environ={"OPENAI_API_KEY": "sk-1", "OPENAI_API_KEY_2": "sk-2"})
    assert cfg.server.port == 9090 and isinstance(cfg.server.port, int)
    assert cfg.server.host == "0.0.0.0"
    keys = cfg.providers["openai"].keys
    assert [(k.value, k.weight, k.models) for k in keys] == [("sk-1", 0.7, None), ("sk-2", 0.3, ["gpt-4o-mini"])]
    assert cfg.providers["openai"].forward_unknown_params is False  # api.openai.com rejects unknown fields
    cfg = parse_config(BASE.replace("${OPENAI_API_KEY}", "${KEY:-fallback}"), environ={"OPENAI_API_KEY_2": "x"})
    assert cfg.providers["openai"].keys[0].value == "fallback"


def test_unset_key_is_skipped_with_warning() -> None:
    cfg = parse_config(BASE, environ={"OPENAI_API_KEY": "sk-1"})
    assert len(cfg.providers["openai"].keys) == 1
    assert any("keys[1]" in w and ":8:" in w for w in cfg.warnings)


def test_missing_master_key_disables_auth() -> None:
    cfg = parse_config("auth: {master_key: '${NOPE}'}\n", environ={})
    assert cfg.auth.master_key is None


@pytest.mark.parametrize(("text", "message"), [
    ("server: {port: 80, colour: red}\n", ":1: unknown key `server.colour`"),
    (BASE + "  other: {rout: openai/x}\n", ":12: unknown key `models.other.rout` (did you mean `route`?)"),
    (BASE.replace("weight: 0.7", "weight: heavy"), ":7: `providers.openai.keys[0].weight` must be float"),
    (BASE.replace("type: openai", "type: vertex"), ":4: `providers.openai.type` must be one of"),
    (BASE + "  x: {route: nowhere/m}\n", "names unknown provider `nowhere`"),
    (BASE + "  x: {route: justaname}\n", "must be `provider/model`"),
    ("server: {port: [1]}\n", "`server.port` must be int"),
    ("providers: {p: {type: openai, timeout_s: -1}}\n", "`providers.p.timeout_s` must be > 0"),
    ("bogus: 1\n", ":1: unknown key `bogus`"),
    ("providers:\n  p: {type: openai}\n  p: {type: openai}\n", ":3: duplicate key `p`"),
    ("server: [\n", "invalid YAML"),
    ("mcp: {servers: {s: {}}}\n", "needs exactly one of `command`"),
])
def test_errors_name_key_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "sb.yaml", environ={"OPENAI_API_KEY": "k", "OPENAI_API_KEY_2": "k"})
    assert message in str(err.value)
    assert str(err.value).startswith("sb.yaml")


def test_check_config_cli(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(BASE)
    out = subprocess.run([sys.executable, "-m", "switchboard.cli", "check-config", str(good)],
                         capture_output=True, text=True, env={"OPENAI_API_KEY": "k", "OPENAI_API_KEY_2": "k"})
    assert out.returncode == 0, out.stderr
    assert "model gpt-4o-mini: openai/gpt-4o-mini" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  prot: 1\n")
    out = subprocess.run([sys.executable, "-m", "switchboard.cli", "check-config", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert f"{bad}:2: unknown key `server.prot`" in out.stderr
    out = subprocess.run([sys.executable, "-m", "switchboard.cli", "serve", "--config", str(bad)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "unknown key `server.prot`" in out.stderr
