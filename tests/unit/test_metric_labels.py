"""Metric labels for model names: the configured names (and agents as loaded) only, `other` for the rest."""

from __future__ import annotations

import os
from pathlib import Path

from switchboard.config import parse_config
from switchboard.gateway import Gateway
from switchboard.observability.labels import ModelLabels

CONFIG = """
providers:
  up:
    type: openai
    base_url: "http://127.0.0.1:9"
    keys: [{value: sk-up, models: [keyed-model]}]
  claude:
    type: anthropic
    base_url: "http://127.0.0.1:9"
    keys: [sk-c]
    max_tokens_by_model: {claude-big: 8000}
models:
  chat: {route: up/m1, fallbacks: [claude/claude-big, up/fb]}
prices:
  up/priced: {input: 1, output: 1}
  nobody/priced: {input: 1, output: 1}
agents: {dir: agents}
"""


def test_only_configured_names_and_loaded_agents_are_labels(tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "helper.md").write_text("---\nmodel: up/agent-model\n---\nHi\n")
    gateway = Gateway(parse_config(CONFIG, base_dir=tmp_path))
    service = gateway.agents
    assert service is not None
    labels = ModelLabels(gateway)

    for name in ("chat", "up/m1", "up/fb", "claude/claude-big", "up/keyed-model", "up/priced", "helper",
                 "up/agent-model"):
        assert labels.label(name) == name
    for name in ("up/x-1", "claude/anything", "nobody/priced", "helper2", "Chat", "up/" + "m" * 10_000):
        assert labels.label(name) == "other"
    assert labels.label(None) == ""

    (agents / "helper.md").unlink()
    (agents / "reviewer.md").write_text("---\nmodel: chat\n---\nReview.\n")
    os.utime(agents, None)
    assert service.registry.reload_if_changed()
    assert labels.label("reviewer") == "reviewer"
    assert labels.label("helper") == "other"
