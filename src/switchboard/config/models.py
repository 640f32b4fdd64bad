"""The `models:` section: one `ModelConfig` per model alias (its route, fallbacks and their
conditions, limits and deadline), and the check that every route and fallback names an alias or a
configured `provider/model`.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass, field

from .errors import ConfigError, _Problems
from .section import _Section
from .yaml_nodes import _Node


@dataclass(slots=True)
class ModelConfig:
    name: str
    route: str
    fallbacks: list[str] = field(default_factory=list)
    fallback_on: list[str] = field(default_factory=list)
    max_in_flight: int | None = None
    queue: int | None = None
    timeout_s: float | None = None  # total deadline of a request; default server.request_timeout_s
    description: str | None = None
    rpm: int | None = None  # requests per minute to this model, all clients together (access.rate_limits)
    tpm: int | None = None  # tokens per minute, counted from each response's usage
    line: int = 0



FALLBACK_CONDITIONS = ("context_window", "content_filter", "rate_limit", "server_error", "timeout", "connection")


def _read_model(name: str, node: _Node, root: _Section) -> ModelConfig:
    if isinstance(node.value, str):  # shorthand `alias: provider/model`
        return ModelConfig(name=name, route=node.value, line=node.line)
    s = root.sub(node, f"models.{name}")
    fallback_on = s.str_list("fallback_on", []) or []
    for cond in fallback_on:
        if cond not in FALLBACK_CONDITIONS:
            s.report(s.items.get("fallback_on"), f"`models.{name}.fallback_on`: unknown condition `{cond}` "
                     f"(one of {', '.join(FALLBACK_CONDITIONS)})")
    cfg = ModelConfig(
        name=name,
        route=s.get("route", str, required=True),
        fallbacks=s.str_list("fallbacks", []) or [],
        fallback_on=[cond for cond in fallback_on if cond in FALLBACK_CONDITIONS],
        max_in_flight=s.positive("max_in_flight", int, None),
        queue=s.positive("queue", int, None, allow_zero=True),
        timeout_s=s.positive("timeout_s", float, None),
        description=s.get("description", str),
        rpm=s.positive("rpm", int, None),
        tpm=s.positive("tpm", int, None),
        line=node.line,
    )
    s.done()
    return cfg



def _check_routes(models: dict[str, ModelConfig], providers: Collection[str], source: str, broken: set[str],
                  problems: _Problems) -> None:
    """Every route and fallback must name a model alias or a configured `provider/model`."""

    def check(target: str, model: ModelConfig, what: str) -> None:
        if target in models or target in broken:
            return
        provider, sep, upstream = target.partition("/")
        if not sep or not upstream:
            problems.add(ConfigError(
                f"{source}:{model.line}: `models.{model.name}.{what}` must be `provider/model`, got `{target}`",
                model.line))
        elif provider not in providers and provider not in broken:
            known = difflib.get_close_matches(provider, list(providers), n=1)
            hint = f" (did you mean `{known[0]}`?)" if known else ""
            problems.add(ConfigError(
                f"{source}:{model.line}: `models.{model.name}.{what}` names unknown provider `{provider}`{hint}",
                model.line))

    for model in models.values():
        if model.route in models:
            problems.add(ConfigError(
                f"{source}:{model.line}: `models.{model.name}.route` must be `provider/model`, not an alias",
                model.line))
            continue
        check(model.route, model, "route")
        for fb in model.fallbacks:
            check(fb, model, "fallbacks")
