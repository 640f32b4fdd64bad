"""The `server:` and `auth:` sections: the listener, its body and memory bounds and timeouts
(`ServerConfig`), and the master key and client keys of the config file (`AuthConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import _Problems
from .section import _Section


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
