"""Which model names may become metric label values: the configured ones; every other name is `other`.

Clients choose the model name, and `provider/<anything>` reaches an upstream that may accept any
name, so a label copied from requests would let clients mint series without bound. The names
allowed are fixed by the operator: the model aliases, the `provider/model` targets their routes and
fallbacks name, the models listed on provider keys, `provider/model` price entries, and the agents
(with their models) as currently loaded. They are gathered once at startup (agents again after a
reload), so resolving a label costs a dict lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..config import Config

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["OTHER", "ModelLabels", "configured_model_names"]

OTHER = "other"


def configured_model_names(config: Config) -> frozenset[str]:
    names: set[str] = set()
    for name, model in config.models.items():
        names.add(name)
        names.add(model.route)
        names.update(model.fallbacks)
    for provider, p in config.providers.items():
        for key in p.keys:
            names.update(f"{provider}/{m}" for m in key.models or ())
        names.update(f"{provider}/{m}" for m in p.max_tokens_by_model)
    names.update(n for n in config.prices if n.partition("/")[0] in config.providers)
    return frozenset(names)


class ModelLabels:
    """`label(model)`: the model name itself when it is configured, else `other` ("" for no model)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._configured = configured_model_names(gateway.config)
        self._agents_seen: Mapping[str, Any] | None = None
        self._agent_names: frozenset[str] = frozenset()

    def label(self, model: str | None) -> str:
        if model is None:
            return ""
        if model in self._configured or model in self._agent_names:
            return model
        agents = self.gateway.agents
        if agents is not None and agents.registry.agents is not self._agents_seen:  # agents (re)loaded
            current = agents.registry.agents
            self._agents_seen = current
            self._agent_names = frozenset(current) | {agent.model for agent in current.values()}
            if model in self._agent_names:
                return model
        return OTHER
