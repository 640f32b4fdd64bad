"""The whole config: `Config` (every section's typed object, plus what the command line adds),
`parse_config`, which reads a document section by section through the section readers, reporting
every error of the file at once, and `load_config` (a file). The small `agents:`, `store:` and
`shared_state:` sections are read here; `observability:` by observability/tracing_config.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..observability.tracing_config import ObservabilityConfig, read_observability
from .errors import ConfigError, _Problems
from .facades import FacadeConfig, _read_facades
from .mcp import McpServerConfig, _read_mcp
from .models import ModelConfig, _check_routes, _read_model
from .prices import _read_prices
from .providers import ProviderConfig, _read_provider
from .responses import ResponsesConfig, _read_responses
from .section import _Section
from .server import AuthConfig, ServerConfig, _read_auth, _read_server
from .yaml_nodes import _load_nodes


@dataclass(slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    models: dict[str, ModelConfig] = field(default_factory=dict)
    agents_dir: str | None = None
    agents_hot_reload: bool = False
    # `switchboard serve --agent FILE [--concurrency N]` (no YAML key): serve this one agent file, in place of
    # `agents.dir`; N, if given, is its max_in_flight whatever its front matter says.
    agent_file: Path | None = None
    agent_max_in_flight: int | None = None
    mcp_servers: dict[str, McpServerConfig] = field(default_factory=dict)
    store_url: str = "sqlite:///switchboard.db"
    shared_state_url: str | None = None
    shared_state_prefix: str = "switchboard:"  # Redis key prefix: several deployments may share one Redis
    shared_state_timeout_s: float = 0.25  # deadline of each shared-state call (`timeout_ms`)
    shared_state_on_failure: str = "open"  # store unreachable: "open" admits unchecked, "closed" answers 503
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    responses: ResponsesConfig = field(default_factory=ResponsesConfig)
    facades: dict[str, FacadeConfig] = field(default_factory=dict)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)  # traces (tracing_config.py)
    base_dir: Path = field(default_factory=Path.cwd)
    warnings: list[str] = field(default_factory=list)



def parse_config(text: str, source: str = "switchboard.yaml", environ: dict[str, str] | None = None,
                 base_dir: Path | None = None) -> Config:
    """The config of `text`; every error found is in the one `ConfigError` raised (`errors`, by line)."""
    env = dict(os.environ) if environ is None else environ
    problems = _Problems()
    root = _Section(_load_nodes(text, source, env, problems), "", source, problems)
    cfg = Config(base_dir=base_dir or Path.cwd())
    broken: set[str] = set()  # providers and models with errors: routes naming them are not checked again
    with problems.guard():
        cfg.server = _read_server(root.section("server"))
    with problems.guard():
        cfg.auth = _read_auth(root.section("auth"), cfg.warnings, problems)

    with problems.guard():
        providers = root.section("providers")
        for name in list(providers.items):
            node = providers.node(name)
            assert node is not None
            if "/" in name:
                providers.report(node, f"provider name `{name}` must not contain `/`")
                continue
            broken.add(name)
            with problems.guard():
                cfg.providers[name] = _read_provider(name, providers.sub(node, f"providers.{name}"),
                                                     cfg.warnings, problems)
                broken.discard(name)
        providers.done()

    with problems.guard():
        models = root.section("models")
        for name in list(models.items):
            node = models.node(name)
            assert node is not None
            broken.add(name)
            with problems.guard():
                cfg.models[name] = _read_model(name, node, root)
                broken.discard(name)
        models.done()

    with problems.guard():
        agents = root.section("agents")
        cfg.agents_dir = agents.get("dir", str)
        cfg.agents_hot_reload = agents.get("hot_reload", bool, False)
        agents.done()
    with problems.guard():
        cfg.mcp_servers = _read_mcp(root.section("mcp"), problems)
    with problems.guard():
        store = root.section("store")
        cfg.store_url = store.get("url", str, "sqlite:///switchboard.db")
        store.done()
    with problems.guard():
        shared = root.section("shared_state")
        cfg.shared_state_url = shared.get("url", str)
        cfg.shared_state_prefix = shared.get("key_prefix", str, "switchboard:")
        cfg.shared_state_timeout_s = shared.positive("timeout_ms", float, 250.0) / 1000
        cfg.shared_state_on_failure = shared.get("on_failure", str, "open")
        if cfg.shared_state_on_failure not in ("open", "closed"):
            shared.report(shared.items.get("on_failure"), "`shared_state.on_failure` must be `open` or `closed`")
        shared.done()
    with problems.guard():
        cfg.prices = _read_prices(root.section("prices"))
    with problems.guard():
        cfg.responses = _read_responses(root.section("responses"))
    with problems.guard():
        cfg.facades = _read_facades(root.section("facades"), cfg.server.port)
    with problems.guard():
        cfg.observability = read_observability(root.section("observability"))
    root.done()
    _check_routes(cfg.models, cfg.providers, source, broken, problems)
    problems.raise_any()
    return cfg



def load_config(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror or exc}") from None
    return parse_config(text, str(p), environ, base_dir=p.resolve().parent)
