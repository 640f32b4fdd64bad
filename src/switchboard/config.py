"""Loading and validating `switchboard.yaml`.

Owns: `${VAR}` / `${VAR:-default}` expansion, the typed config objects the rest of the gateway
reads, and errors that name the offending key and its line. Unknown keys are errors. Reading goes
on past an error, so one run reports every error of a file (`ConfigError.errors`), in line order.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .observability.tracing_config import ObservabilityConfig, read_observability

__all__ = [
    "AuthConfig",
    "ClientKeyConfig",
    "Config",
    "ConfigError",
    "CooldownConfig",
    "McpServerConfig",
    "ModelConfig",
    "ProviderConfig",
    "ProviderKey",
    "ResponsesConfig",
    "RetryConfig",
    "ServerConfig",
    "load_config",
    "parse_config",
]

PROVIDER_TYPES = ("openai", "anthropic", "azure", "bedrock")
DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}


class ConfigError(Exception):
    """A config problem, with the key path and line it concerns in the message (`file:line: message`).

    `errors` lists every problem found in one file (the message is those lines joined), `line` is
    the line of the first one (0: no line).
    """

    def __init__(self, message: str, line: int = 0, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.errors = errors if errors is not None else [message]


class _Problems:
    """The errors found so far in one file: reading goes on past one, so a run reports them all."""

    def __init__(self) -> None:
        self.found: list[ConfigError] = []

    def add(self, error: ConfigError) -> None:
        if all(str(error) != str(seen) for seen in self.found):
            self.found.append(error)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Run one entry's reading; an error is recorded and reading goes on with the next entry."""
        try:
            yield
        except ConfigError as exc:
            self.add(exc)

    def raise_any(self, by_line: bool = True) -> None:
        """Raise what was found, if anything: one error as is, several as one `ConfigError` listing them."""
        if not self.found:
            return
        # stable: errors of one line keep their reading order; without `by_line` (several files), reading order
        ordered = sorted(self.found, key=lambda e: e.line or 1 << 30) if by_line else self.found
        if len(ordered) == 1:
            raise ordered[0]
        messages = [m for e in ordered for m in e.errors]
        raise ConfigError("\n".join(messages), ordered[0].line, messages)


@dataclass(slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    path_prefixes: list[str] = field(default_factory=list)
    max_body_bytes: int = 16 * 1024 * 1024
    # Request bodies held in memory while being read: across all requests, and per API key.
    max_body_memory_bytes: int = 256 * 1024 * 1024
    max_body_memory_per_key_bytes: int = 64 * 1024 * 1024
    # Open WebUI marks background tasks (titles, tags) with this header; see agents.
    task_header: str = "x-openwebui-task"
    shutdown_grace_s: float = 30.0
    # Total time for one request across all attempts, retries and fallbacks (streams: until the first chunk).
    request_timeout_s: float = 600.0
    # A client that reads nothing of its response for this long (the write buffer stays full) is cut, and
    # the upstream request behind it is cancelled (as nginx's send_timeout).
    send_timeout_s: float = 60.0


@dataclass(slots=True)
class ClientKeyConfig:
    name: str
    value: str
    models: list[str] = field(default_factory=lambda: ["*"])


@dataclass(slots=True)
class AuthConfig:
    master_key: str | None = None
    keys: list[ClientKeyConfig] = field(default_factory=list)


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
    max_in_flight: int = 256
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


@dataclass(slots=True)
class McpServerConfig:
    name: str
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 60.0


HOSTED_TOOL_POLICIES = ("drop", "reject")


@dataclass(slots=True)
class ResponsesConfig:
    """`responses:`: stored Responses API conversations and what the headend does with tools it cannot bridge."""

    ttl_days: float = 30.0  # a stored response is readable and chainable this long, then purged
    max_stored_bytes: int = 8 * 1024 * 1024  # bound on `store.stored_size(response)` for a response to be stored
    hosted_tools: str = "drop"  # web_search, file_search...: "drop" (and name them in a header) or "reject" (400)
    allowed_mcp_urls: list[str] = field(default_factory=list)  # `mcp` tool `server_url`s a client may name

    @property
    def ttl_s(self) -> float:
        return self.ttl_days * 86400.0


@dataclass(slots=True)
class FacadeConfig:
    """`facades.<name>`: chosen models or agents behind a path prefix or a port of their own, with defaults."""

    name: str
    prefix: str | None = None  # e.g. /api: POST /api/chat/completions (and /api/v1/...)
    port: int | None = None  # a second listener of the same process
    model: str | None = None  # used when a request names none (always, with pin_model)
    pin_model: bool = False
    stream: bool | None = None  # the default when a request does not say
    defaults: dict[str, Any] = field(default_factory=dict)  # request fields, when the request lacks them
    limits: dict[str, float] = field(default_factory=dict)  # numeric upper bounds (max_tokens...)
    on_limit: str = "clamp"  # or "reject" (400)
    models: list[str] | None = None  # what this facade serves and lists (globs); None: what the key may use
    auth: str = "gateway"  # "gateway" (the gateway's keys), "keys" (`keys` below only) or "none"
    keys: list[str] = field(default_factory=list)
    max_in_flight: int | None = None
    queue: int = 64
    line: int = 0


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


# --------------------------------------------------------------------------------------------
# YAML with line numbers and ${VAR} expansion

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Node:
    """A loaded YAML value with the line it came from."""

    __slots__ = ("line", "value")

    def __init__(self, value: Any, line: int) -> None:
        self.value = value
        self.line = line


def _expand(text: str, environ: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        value = environ.get(m.group(1))
        if value is None or (value == "" and m.group(2) is not None):
            return m.group(2) if m.group(2) is not None else ""
        return value

    return _VAR.sub(sub, text)


def _yaml_error(exc: yaml.YAMLError, source: str) -> ConfigError:
    """`file:line: invalid YAML (column N): what`, from PyYAML's marks (0-based)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = exc.problem or "syntax error"
        if exc.context and exc.context_mark is not None and exc.context_mark.line != mark.line:
            what += f" ({exc.context} at line {exc.context_mark.line + 1})"
        elif exc.context:
            what = f"{exc.context}: {what}"
        return ConfigError(f"{source}:{mark.line + 1}: invalid YAML (column {mark.column + 1}): {what}",
                           mark.line + 1)
    return ConfigError(f"{source}: invalid YAML: {exc}")


def _load_nodes(text: str, source: str, environ: dict[str, str], problems: _Problems | None = None) -> _Node:
    """The YAML tree with lines; a duplicate key is an error (recorded in `problems` if given: the first wins)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    finally:
        loader.dispose()
    if root is None:
        return _Node({}, 1)

    def convert(node: yaml.Node) -> _Node:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, _Node] = {}
            for key_node, value_node in node.value:
                key = convert(key_node).value
                if not isinstance(key, str):
                    key = str(key)
                if key in out:
                    duplicate = ConfigError(f"{source}:{key_node.start_mark.line + 1}: duplicate key `{key}`",
                                            key_node.start_mark.line + 1)
                    if problems is None:
                        raise duplicate
                    problems.add(duplicate)
                    continue
                out[key] = convert(value_node)
            return _Node(out, line)
        if isinstance(node, yaml.SequenceNode):
            return _Node([convert(item) for item in node.value], line)
        assert isinstance(node, yaml.ScalarNode)
        raw = node.value
        if "${" in raw:
            raw = _expand(raw, environ)
            if node.style is None:  # plain scalar: re-resolve its type after expansion (`port: ${PORT}`)
                # PyYAML's stubs leave Resolver.resolve unannotated; it returns the tag string.
                tag: str = yaml.SafeLoader.resolve(  # type: ignore[no-untyped-call]
                    loader, yaml.ScalarNode, raw, (True, False))
                node = yaml.ScalarNode(tag, raw, node.start_mark, node.end_mark, node.style)
            else:
                node = yaml.ScalarNode(node.tag, raw, node.start_mark, node.end_mark, node.style)
        return _Node(loader.construct_object(node, deep=True), line)

    return convert(root)


# --------------------------------------------------------------------------------------------
# Typed reading of sections


class _Section:
    """Reads one mapping, checking types; `done()` rejects keys nobody read.

    With `problems`, a wrong value of an optional key is recorded there and its default used, so
    reading goes on; errors that leave nothing to go on with (a required key, a non-mapping) raise.
    """

    def __init__(self, node: _Node, path: str, source: str, problems: _Problems | None = None) -> None:
        self.source = source
        self.path = path
        self.line = node.line
        self.problems = problems
        if node.value is None:
            node = _Node({}, node.line)
        if not isinstance(node.value, dict):
            raise self.error(node, f"`{path}` must be a mapping")
        self.items: dict[str, _Node] = node.value
        self.seen: set[str] = set()

    def error(self, node: _Node | None, message: str) -> ConfigError:
        line = node.line if node is not None else self.line
        return ConfigError(f"{self.source}:{line}: {message}", line)

    def report(self, node: _Node | None, message: str) -> None:
        """An error after which reading can go on: recorded (raised when there is no `problems`)."""
        error = self.error(node, message)
        if self.problems is None:
            raise error
        self.problems.add(error)

    def sub(self, node: _Node, path: str) -> _Section:
        return _Section(node, path, self.source, self.problems)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def node(self, name: str) -> _Node | None:
        self.seen.add(name)
        return self.items.get(name)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        node = self.node(name)
        if node is None or node.value is None:
            if required:
                typo = difflib.get_close_matches(name, [k for k in self.items if k not in self.seen], n=1)
                if typo:
                    raise self.error(self.items[typo[0]], f"unknown key `{self.key(typo[0])}` (did you mean `{name}`?)")
                raise self.error(node, f"`{self.key(name)}` is required")
            return default
        value = node.value
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            message = f"`{self.key(name)}` must be {names}, got {type(value).__name__}"
            if required:
                raise self.error(node, message)
            self.report(node, message)
            return default
        return value

    def str_list(self, name: str, default: list[str] | None = None) -> list[str] | None:
        node = self.node(name)
        if node is None or node.value is None:
            return default
        if isinstance(node.value, str):
            return [node.value]
        if not isinstance(node.value, list) or not all(isinstance(i.value, str) for i in node.value):
            self.report(node, f"`{self.key(name)}` must be a list of strings")
            return default
        return [i.value for i in node.value]

    def str_map(self, name: str) -> dict[str, str]:
        node = self.node(name)
        if node is None or node.value is None:
            return {}
        sub = self.sub(node, self.key(name))
        out: dict[str, str] = {}
        for k, v in sub.items.items():
            if v.value is None:
                continue
            if not isinstance(v.value, str | int | float | bool):
                sub.report(v, f"`{sub.key(k)}` must be a string")
                continue
            out[k] = str(v.value)
        return out

    def section(self, name: str) -> _Section:
        node = self.node(name)
        return self.sub(node if node is not None else _Node({}, self.line), self.key(name))

    def positive(self, name: str, kind: type, default: Any, allow_zero: bool = False) -> Any:
        value = self.get(name, kind, default)
        if value is not None and (value < 0 or (value == 0 and not allow_zero)):
            self.report(self.items.get(name), f"`{self.key(name)}` must be {'>= 0' if allow_zero else '> 0'}")
            return default
        return value

    def done(self, also_known: Iterable[str] = ()) -> None:
        """Every key nobody read is an error (with the closest key that exists, if one is close; keys
        valid here but not read, such as an agent file's chat parameters, are `also_known`)."""
        known = sorted({*self.seen, *also_known})
        for name, node in self.items.items():
            if name not in self.seen:
                typo = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean `{typo[0]}`?)" if typo else ""
                self.report(node, f"unknown key `{self.key(name)}`{hint}")


def _read_server(s: _Section) -> ServerConfig:
    prefixes = s.str_list("path_prefixes", []) or []
    for p in prefixes:
        if not p.startswith("/") or (p.endswith("/") and p != "/"):
            s.report(s.items.get("path_prefixes"), f"path prefix `{p}` must start with / and not end with /")
    cfg = ServerConfig(
        host=s.get("host", str, "127.0.0.1"),
        port=s.get("port", int, 8080),
        path_prefixes=prefixes,
        max_body_bytes=s.positive("max_body_bytes", int, 16 * 1024 * 1024),
        max_body_memory_bytes=s.positive("max_body_memory_bytes", int, 256 * 1024 * 1024),
        max_body_memory_per_key_bytes=s.positive("max_body_memory_per_key_bytes", int, 64 * 1024 * 1024),
        task_header=s.get("task_header", str, "x-openwebui-task").lower(),
        shutdown_grace_s=s.positive("shutdown_grace_s", float, 30.0, allow_zero=True),
        request_timeout_s=s.positive("request_timeout_s", float, 600.0),
        send_timeout_s=s.positive("send_timeout_s", float, 60.0),
    )
    s.done()
    return cfg


def _read_auth(s: _Section, warnings: list[str], problems: _Problems) -> AuthConfig:
    master = s.get("master_key", str) or None
    keys: list[ClientKeyConfig] = []
    node = s.node("keys")
    if node is not None and node.value is not None:
        if not isinstance(node.value, list):
            s.report(node, "`auth.keys` must be a list")
        for i, item in enumerate(node.value if isinstance(node.value, list) else []):
            with problems.guard():
                k = s.sub(item, f"auth.keys[{i}]")
                value = k.get("value", str, required=True)
                name = k.get("name", str, f"key{i}")
                models = k.str_list("models", ["*"]) or []
                k.done()
                if not value:
                    warnings.append(f"{s.source}:{item.line}: auth key `{name}` has an empty value; skipped")
                    continue
                keys.append(ClientKeyConfig(name=name, value=value, models=models))
    s.done()
    return AuthConfig(master_key=master, keys=keys)


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
        max_in_flight=s.positive("max_in_flight", int, 256),
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
    from .providers.presets import PRESETS  # pure data; imported here, as the providers package imports us

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


def read_mcp_server(name: str, m: _Section) -> McpServerConfig:
    """One MCP server's keys (`mcp.servers.<name>`, or an agent file's `mcp.<name>`)."""
    cfg = McpServerConfig(
        name=name,
        command=m.get("command", str),
        args=[str(a) for a in (m.str_list("args", []) or [])],
        env=m.str_map("env"),
        cwd=m.get("cwd", str),
        url=m.get("url", str),
        headers=m.str_map("headers"),
        timeout_s=m.positive("timeout_s", float, 60.0),
    )
    if bool(cfg.command) == bool(cfg.url):
        raise m.error(None, f"`{m.path}` needs exactly one of `command` (stdio) or `url` (HTTP)")
    m.done()
    return cfg


def _read_mcp(s: _Section, problems: _Problems) -> dict[str, McpServerConfig]:
    servers: dict[str, McpServerConfig] = {}
    srv = s.section("servers")
    for name in list(srv.items):
        node = srv.node(name)
        assert node is not None
        with problems.guard():
            servers[name] = read_mcp_server(name, srv.sub(node, f"mcp.servers.{name}"))
    srv.done()
    s.done()
    return servers


def _read_prices(s: _Section) -> dict[str, dict[str, float]]:
    prices: dict[str, dict[str, float]] = {}
    for model in list(s.items):
        p = s.section(model)
        prices[model] = {
            "input": p.positive("input", float, 0.0, allow_zero=True),
            "output": p.positive("output", float, 0.0, allow_zero=True),
        }
        # Optional (USD per 1M tokens): absent, cached input and cache writes cost the input price and
        # reasoning the output price (see prices.py).
        for optional in ("cached_input", "cache_write", "reasoning"):
            if optional in p.items:
                prices[model][optional] = p.positive(optional, float, 0.0, allow_zero=True)
        p.done()
        s.seen.add(model)
    s.done()
    return prices


def _read_responses(s: _Section) -> ResponsesConfig:
    cfg = ResponsesConfig(
        ttl_days=s.positive("ttl_days", float, 30.0),
        max_stored_bytes=s.positive("max_stored_bytes", int, 8 * 1024 * 1024),
        hosted_tools=s.get("hosted_tools", str, "drop"),
        allowed_mcp_urls=s.str_list("allowed_mcp_urls", []) or [],
    )
    if cfg.hosted_tools not in HOSTED_TOOL_POLICIES:
        s.report(s.items.get("hosted_tools"), "`responses.hosted_tools` must be `drop` or `reject`")
    for url in cfg.allowed_mcp_urls:
        if not url.startswith(("http://", "https://")):
            s.report(s.items.get("allowed_mcp_urls"),
                     f"`responses.allowed_mcp_urls` must list http:// or https:// URLs, got `{url}`")
    s.done()
    return cfg


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
    _check_routes(cfg, source, broken, problems)
    problems.raise_any()
    return cfg


def _check_routes(cfg: Config, source: str, broken: set[str], problems: _Problems) -> None:
    """Every route and fallback must name a model alias or a configured `provider/model`."""

    def check(target: str, model: ModelConfig, what: str) -> None:
        if target in cfg.models or target in broken:
            return
        provider, sep, upstream = target.partition("/")
        if not sep or not upstream:
            problems.add(ConfigError(
                f"{source}:{model.line}: `models.{model.name}.{what}` must be `provider/model`, got `{target}`",
                model.line))
        elif provider not in cfg.providers and provider not in broken:
            known = difflib.get_close_matches(provider, list(cfg.providers), n=1)
            hint = f" (did you mean `{known[0]}`?)" if known else ""
            problems.add(ConfigError(
                f"{source}:{model.line}: `models.{model.name}.{what}` names unknown provider `{provider}`{hint}",
                model.line))

    for model in cfg.models.values():
        if model.route in cfg.models:
            problems.add(ConfigError(
                f"{source}:{model.line}: `models.{model.name}.route` must be `provider/model`, not an alias",
                model.line))
            continue
        check(model.route, model, "route")
        for fb in model.fallbacks:
            check(fb, model, "fallbacks")


def load_config(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror or exc}") from None
    return parse_config(text, str(p), environ, base_dir=p.resolve().parent)



def _plain(node: _Node) -> Any:
    """A loaded YAML value without its line numbers."""
    value = node.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


_FACADE_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "temperature", "top_p", "n")


def _read_facades(s: _Section, gateway_port: int) -> dict[str, FacadeConfig]:
    facades: dict[str, FacadeConfig] = {}
    for name in list(s.items):
        node = s.node(name)
        assert node is not None
        f = _Section(node, f"facades.{name}", s.source)
        prefix = f.get("prefix", str)
        port = f.get("port", int)
        if (prefix is None) == (port is None):
            raise f.error(node, f"`facades.{name}` needs exactly one of `prefix` (a path) or `port` (a listener)")
        if prefix is not None and (not prefix.startswith("/") or prefix.endswith("/") or prefix == "/"):
            raise f.error(f.items.get("prefix"), f"`facades.{name}.prefix` must start with / and not end with /")
        if port is not None and (not 0 < port < 65536 or port == gateway_port):
            raise f.error(f.items.get("port"), f"`facades.{name}.port` must be a free port other than server.port")
        defaults_node = f.node("defaults")
        defaults = _plain(defaults_node) if defaults_node is not None and defaults_node.value is not None else {}
        if not isinstance(defaults, dict):
            raise f.error(defaults_node, f"`facades.{name}.defaults` must be a mapping of request fields")
        limits: dict[str, float] = {}
        lnode = f.node("limits")
        if lnode is not None and lnode.value is not None:
            ls = _Section(lnode, f"facades.{name}.limits", s.source)
            for field_name in list(ls.items):
                if field_name not in _FACADE_LIMITS:
                    raise ls.error(ls.items.get(field_name), f"`facades.{name}.limits.{field_name}`: only "
                                   f"{', '.join(_FACADE_LIMITS)} can be limited")
                limits[field_name] = ls.positive(field_name, float, 1.0)
            ls.done()
        auth_node = f.node("auth")
        auth, keys = "gateway", []
        if auth_node is not None and auth_node.value == "none":
            auth = "none"
        elif auth_node is not None and auth_node.value is not None:
            a = _Section(auth_node, f"facades.{name}.auth", s.source)
            keys = [k for k in a.str_list("keys", []) or [] if k]
            a.done()
            auth = "keys"
            if not keys:
                raise f.error(auth_node, f"`facades.{name}.auth.keys` lists no (non-empty) key; "
                              "use `auth: none` for a trusted network")
        on_limit = f.get("on_limit", str, "clamp")
        if on_limit not in ("clamp", "reject"):
            raise f.error(f.items.get("on_limit"), f"`facades.{name}.on_limit` must be `clamp` or `reject`")
        stream = f.get("stream", bool)
        facades[name] = FacadeConfig(
            name=name, prefix=prefix, port=port, model=f.get("model", str), pin_model=f.get("pin_model", bool, False),
            stream=stream, defaults=defaults, limits=limits, on_limit=on_limit, models=f.str_list("models"),
            auth=auth, keys=keys, max_in_flight=f.positive("max_in_flight", int, None),
            queue=f.positive("queue", int, 64, allow_zero=True), line=node.line)
        if facades[name].pin_model and facades[name].model is None:
            raise f.error(node, f"`facades.{name}.pin_model` needs `model`")
        f.done()
    s.done()
    return facades
