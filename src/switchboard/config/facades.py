"""The `facades:` section: one `FacadeConfig` per facade (a path prefix or a port of its own, its
default and pinned model, request defaults and limits, its models and keys, its concurrency).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .section import _Section
from .yaml_nodes import _plain


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
