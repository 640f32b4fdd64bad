"""The few lines `switchboard serve` prints at startup: where it listens, whether auth is on, what it
serves (models, agents) and where it keeps its data. Built once from the config and the agents loaded."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .agents.definitions import AgentDefinition
from .config import Config, FacadeConfig

__all__ = ["banner", "store_location"]


def store_location(config: Config) -> str:
    """`SQLite /abs/path.db` or the PostgreSQL URL without its password."""
    url = config.store_url
    if url.startswith("sqlite://"):
        raw = url[len("sqlite://"):]
        path = Path(raw[1:] if raw.startswith("/") else raw)  # as store.build_store reads it
        return f"SQLite {path if path.is_absolute() else (config.base_dir / path).resolve()}"
    return f"PostgreSQL {_without_password(url)}"


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _models(config: Config) -> str:
    aliases = [f"{name} -> {m.route}" for name, m in config.models.items()]
    providers = [f"{name} (listed in /v1/models)" if p.list_models else name for name, p in config.providers.items()]
    parts = []
    if aliases:
        parts.append(", ".join(aliases))
    if providers:
        parts.append("any <provider>/<model> of " + ", ".join(providers))
    return "; ".join(parts) or "none (no provider configured)"


def _agents(agents: Iterable[AgentDefinition]) -> str:
    out = []
    for agent in agents:
        tools = ", ".join(ref.server + (f".{ref.tool}" if ref.tool else "") for ref in agent.tools)
        out.append(f"{agent.name} (model {agent.model}" + (f"; tools {tools}" if tools else "")
                   + (f"; max_in_flight {agent.max_in_flight}" if agent.max_in_flight else "") + ")")
    return ", ".join(out) or "none"


def banner(config: Config, source: str, agents: Iterable[AgentDefinition], host: str, port: int) -> str:
    """The startup banner; `source` names where the config came from (a file, or the environment)."""
    where = f"http://{host}:{port}" if port else f"http://{host}:<a free port, see 'listening on' below>"
    if config.auth.master_key:
        auth = f"on (master key; {len(config.auth.keys)} static key(s); virtual keys in the store)"
    else:
        auth = "OFF: anyone who can reach this port may use every model (set SWITCHBOARD_MASTER_KEY)"
    lines = [
        f"Switchboard: {where}/v1  (config: {source})",
        f"  auth:   {auth}",
        f"  models: {_models(config)}",
        f"  agents: {_agents(agents)}",
        f"  store:  {store_location(config)}",
    ]
    if config.shared_state_url:
        lines.append(f"  shared state: {_without_password(config.shared_state_url)}")
    lines.extend(f"  facade: {describe_facade(f)}" for f in config.facades.values())
    return "\n".join(lines)


def describe_facade(facade: FacadeConfig) -> str:
    """One line: where a facade listens and what it serves."""
    where = f"prefix {facade.prefix}" if facade.prefix is not None else f"port {facade.port}"
    parts = [f"{facade.name}: {where}"]
    if facade.model is not None:
        parts.append(f"model {facade.model}{' (pinned)' if facade.pin_model else ''}")
    if facade.models is not None:
        parts.append(f"models {', '.join(facade.models)}")
    parts.append({"gateway": "the gateway's keys", "keys": f"{len(facade.keys)} own key(s)",
                  "none": "NO AUTH"}[facade.auth])
    if facade.max_in_flight is not None:
        parts.append(f"max_in_flight {facade.max_in_flight}")
    return "; ".join(parts)
