"""The `providers:` section: one `ProviderConfig` per upstream (its type, URL, keys, retries,
cooldown, transport bounds and per-type settings), with a `preset:` filling in the keys a provider
does not set itself (the presets' values are data in providers/presets.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import _Problems
from .section import _Section
from .yaml_nodes import _Node

PROVIDER_TYPES = ("openai", "anthropic", "azure", "bedrock")
DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}



@dataclass(slots=True)
class ProviderKey:
    value: str
    weight: float = 1.0
    models: list[str] | None = None  # None: every model of the provider
    id: str = ""  # a stable, non-secret label ("openai#0") for logs, metrics and cooldowns


@dataclass(slots=True)
class CooldownConfig:
    failures: int = 3  # consecutive failures that open a deployment's circuit; 0 disables cooldowns
    seconds: float = 30.0


@dataclass(slots=True)
class RetryConfig:
    max: int = 2
    backoff_initial_ms: int = 100
    backoff_max_ms: int = 2000


@dataclass(slots=True)
class ProviderConfig:
    name: str
    type: str
    base_url: str
    keys: list[ProviderKey] = field(default_factory=list)
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    retries: RetryConfig = field(default_factory=RetryConfig)
    cooldown: CooldownConfig = field(default_factory=CooldownConfig)
    max_in_flight: int = 1000  # as Bifrost: a stream holds its slot for its whole length
    queue: int = 1024
    list_models: bool = False
    drop_params: list[str] = field(default_factory=list)
    forward_unknown_params: bool = True
    # `/v1/responses` to this provider: "native" passes the request through (an upstream that speaks
    # the Responses API: api.openai.com by default), "bridge" translates it to chat completions.
    responses: str = "bridge"
    headers: dict[str, str] = field(default_factory=dict)
    # Upstream transport bounds (providers/http1.py, sse.py): memory held per response, pooled connections.
    max_response_bytes: int = 128 * 1024 * 1024  # a non-stream answer larger fails with 502
    max_event_bytes: int = 16 * 1024 * 1024  # one stream event larger fails the stream
    pool_idle_s: float = 30.0  # a pooled connection idle this long is closed
    pool_max_idle: int | None = None  # idle connections kept per upstream origin; None: max_in_flight
    # Anthropic-specific
    anthropic_version: str = "2023-06-01"
    default_max_tokens: int = 4096
    max_tokens_by_model: dict[str, int] = field(default_factory=dict)
    drop_unsupported: bool = False
    # Upstream quirks (`type: openai`; a `preset` fills them in, see providers/presets.py)
    preset: str | None = None
    key_header: str = "authorization"  # the header carrying the key: "authorization" (Bearer) or a header name
    unsupported_params: list[str] = field(default_factory=list)  # set: 400 naming it, or dropped (drop_unsupported)
    rename_params: dict[str, str] = field(default_factory=dict)  # client field -> the upstream's name for it
    stream_usage: bool = True  # ask for the usage chunk with stream_options.include_usage
    # Azure OpenAI (`type: azure`): api_version set -> deployment URLs; unset -> the v1 API
    api_version: str | None = None
    deployments: dict[str, str] = field(default_factory=dict)  # model name -> deployment name
    # AWS Bedrock (`type: bedrock`); no keys and no access key: the standard AWS credential sources
    region: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    line: int = 0



def _read_provider(name: str, s: _Section, warnings: list[str], problems: _Problems) -> ProviderConfig:
    ptype = s.get("type", str, required=True)
    if ptype not in PROVIDER_TYPES:
        raise s.error(s.items.get("type"), f"`providers.{name}.type` must be one of {', '.join(PROVIDER_TYPES)}")
    preset = _apply_preset(s, ptype)
    region = s.get("region", str)
    if ptype == "bedrock" and not region:
        raise s.error(None, f"`providers.{name}.region` is required for a bedrock provider (e.g. us-east-1)")
    default_url = f"https://bedrock-runtime.{region}.amazonaws.com" if ptype == "bedrock" else \
        DEFAULT_BASE_URLS.get(ptype)
    if default_url is None and not s.get("base_url", str):
        raise s.error(None, f"`providers.{name}.base_url` is required (your resource's endpoint, "
                            "https://NAME.openai.azure.com)")
    base_url = (s.get("base_url", str) or default_url or "").rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        s.report(s.items.get("base_url"), f"`providers.{name}.base_url` must be an http(s) URL")
    keys: list[ProviderKey] = []
    knode = s.node("keys")
    if knode is not None and knode.value is not None:
        if not isinstance(knode.value, list):
            s.report(knode, f"`providers.{name}.keys` must be a list")
        for i, item in enumerate(knode.value if isinstance(knode.value, list) else []):
            if isinstance(item.value, str):
                item = _Node({"value": item}, item.line)
            with problems.guard():
                k = s.sub(item, f"providers.{name}.keys[{i}]")
                value = k.get("value", str, "")
                weight = k.positive("weight", float, 1.0)
                models = k.str_list("models")
                k.done()
                if not value:
                    warnings.append(
                        f"{s.source}:{item.line}: providers.{name}.keys[{i}] is empty (unset variable?); skipped")
                    continue
                keys.append(ProviderKey(value=value, weight=weight, models=models, id=f"{name}#{i}"))
    r = s.section("retries")
    retries = RetryConfig(
        max=r.positive("max", int, 2, allow_zero=True),
        backoff_initial_ms=r.positive("backoff_initial_ms", int, 100, allow_zero=True),
        backoff_max_ms=r.positive("backoff_max_ms", int, 2000, allow_zero=True),
    )
    r.done()
    c = s.section("cooldown")
    cooldown = CooldownConfig(failures=c.positive("failures", int, 3, allow_zero=True),
                              seconds=c.positive("seconds", float, 30.0))
    c.done()
    # Strict upstreams reject fields they do not know: api.openai.com and Azure OpenAI.
    is_openai_com = "api.openai.com" in base_url or ptype == "azure"
    max_tokens_by_model: dict[str, int] = {}
    ms = s.section("max_tokens_by_model")
    for model_name in list(ms.items):
        max_tokens_by_model[model_name] = ms.positive(model_name, int, 4096)
    ms.done()
    cfg = ProviderConfig(
        name=name,
        type=ptype,
        base_url=base_url,
        keys=keys,
        timeout_s=s.positive("timeout_s", float, 60.0),
        connect_timeout_s=s.positive("connect_timeout_s", float, 10.0),
        retries=retries,
        cooldown=cooldown,
        max_in_flight=s.positive("max_in_flight", int, 1000),
        queue=s.positive("queue", int, 1024, allow_zero=True),
        list_models=s.get("list_models", bool, False),
        drop_params=s.str_list("drop_params", []) or [],
        forward_unknown_params=s.get("forward_unknown_params", bool, not is_openai_com),
        responses=_responses_mode(s, "native" if is_openai_com and ptype == "openai" else "bridge"),
        headers=s.str_map("headers"),
        max_response_bytes=s.positive("max_response_bytes", int, 128 * 1024 * 1024),
        max_event_bytes=s.positive("max_event_bytes", int, 16 * 1024 * 1024),
        pool_idle_s=s.positive("pool_idle_s", float, 30.0),
        pool_max_idle=s.positive("pool_max_idle", int, None),
        anthropic_version=s.get("anthropic_version", str, "2023-06-01"),
        default_max_tokens=s.positive("default_max_tokens", int, 4096),
        max_tokens_by_model=max_tokens_by_model,
        drop_unsupported=s.get("drop_unsupported", bool, False),
        preset=preset,
        key_header=s.get("key_header", str, "api-key" if ptype == "azure" else "authorization").lower(),
        unsupported_params=s.str_list("unsupported_params", []) or [],
        rename_params=s.str_map("rename_params"),
        stream_usage=s.get("stream_usage", bool, True),
        api_version=s.get("api_version", str),
        deployments=s.str_map("deployments"),
        region=region,
        aws_access_key_id=s.get("aws_access_key_id", str) or None,
        aws_secret_access_key=s.get("aws_secret_access_key", str) or None,
        aws_session_token=s.get("aws_session_token", str) or None,
        line=s.line,
    )
    if bool(cfg.aws_access_key_id) != bool(cfg.aws_secret_access_key):
        raise s.error(None, f"`providers.{name}` needs both `aws_access_key_id` and `aws_secret_access_key`")
    s.done()
    return cfg


def _responses_mode(s: _Section, default: str) -> str:
    mode: str = s.get("responses", str, default)
    if mode not in ("native", "bridge"):
        s.report(s.items.get("responses"), f"`{s.path}.responses` must be `native` or `bridge`, got `{mode}`")
        return default
    return mode


def _apply_preset(s: _Section, ptype: str) -> str | None:
    """`preset: NAME` (type openai): the preset's values for the keys the provider does not set itself."""
    preset: str | None = s.get("preset", str)
    if preset is None:
        return None
    from ..providers.presets import PRESETS  # pure data; imported here, as the providers package imports us

    node = s.items["preset"]
    if ptype != "openai":
        raise s.error(node, f"`{s.key('preset')}` applies to `type: openai` providers only")
    if preset not in PRESETS:
        raise s.error(node, f"`{s.key('preset')}`: unknown preset `{preset}` (one of {', '.join(sorted(PRESETS))})")

    def wrap(value: Any) -> _Node:
        if isinstance(value, dict):
            return _Node({k: wrap(v) for k, v in value.items()}, node.line)
        if isinstance(value, list | tuple):
            return _Node([wrap(v) for v in value], node.line)
        return _Node(value, node.line)

    for key, value in PRESETS[preset].items():
        if key not in s.items:  # what the config says itself wins
            s.items[key] = wrap(value)
    return preset
