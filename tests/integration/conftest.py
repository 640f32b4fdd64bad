"""Fixtures of the integration tests: the core gateway of the package, and the fake upstreams of one
test module each (shared setup that is no fixture is in fixtures.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.agent_upstream import FakeAgentUpstream
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.codex_upstream import FakeCodexUpstream
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.fixtures import running
from tests.server import SwitchboardProcess

MASTER = "sk-test-master"
APP_KEY = "sk-test-app-key"


def core_config(fake: FakeOpenAI) -> str:
    return f"""
server:
  path_prefixes: ["/openai", "/api"]
  max_body_bytes: 200000
auth:
  master_key: ${{TEST_MASTER_KEY}}
  keys:
    - {{name: app, value: "{APP_KEY}", models: ["gpt-4o-mini", "up/*"]}}
providers:
  up:
    type: openai
    base_url: {fake.base_url}
    keys:
      - {{value: sk-upstream-secret-1, weight: 1}}
    list_models: true
    retries: {{max: 0}}
  strict:
    type: openai
    base_url: {fake.base_url}
    keys: [{{value: sk-upstream-secret-2}}]
    forward_unknown_params: false
    drop_params: [seed]
    retries: {{max: 0}}
models:
  gpt-4o-mini: {{route: up/gpt-4o-mini}}
  embedder: {{route: up/text-embedding-3-small}}
  strict-model: {{route: strict/gpt-4o}}
"""


@pytest.fixture(scope="package")
def gateway(fake_openai: FakeOpenAI) -> Iterator[SwitchboardProcess]:
    server = SwitchboardProcess(core_config(fake_openai), env={"TEST_MASTER_KEY": MASTER}).start()
    yield server
    server.stop()


# The fake upstreams of one test module each (module scope: a module that uses one gets its own).
@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeAgentUpstream]:
    """The scripted chat model (tests/fakes/agent_upstream.py), provider `up` of `scripted_config`."""
    with running(FakeAgentUpstream()) as fake:
        yield fake


@pytest.fixture(scope="module")
def codex_upstream() -> Iterator[FakeCodexUpstream]:
    """The model that plays for Codex CLI (tests/fakes/codex_upstream.py)."""
    with running(FakeCodexUpstream()) as fake:
        yield fake


@pytest.fixture(scope="module")
def claude_upstream() -> Iterator[FakeAnthropic]:
    """A fake Anthropic Messages upstream, provider `claude` of `scripted_config(claude=...)`."""
    with running(FakeAnthropic()) as fake:
        yield fake
