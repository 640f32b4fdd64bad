"""Loading and validating `switchboard.yaml`.

Owns: `${VAR}` / `${VAR:-default}` expansion, the typed config objects the rest of the gateway
reads, and errors that name the offending key and its line. Unknown keys are errors. Reading goes
on past an error, so one run reports every error of a file (`ConfigError.errors`), in line order.

This module only re-exports; the work is done in its modules, each owning one thing:
`errors.py` (`ConfigError`, the errors of one file), `yaml_nodes.py` (YAML with lines and `${VAR}`
expansion), `section.py` (`_Section`, typed reading of one mapping), one module per section
(`server.py` with `auth:`, `providers.py` with presets, `models.py` with the route check, `mcp.py`,
`responses.py`, `facades.py`, `prices.py`) and `root.py` (`Config`, `parse_config`, `load_config`).
The `observability:` section is read by observability/tracing_config.py.
"""

from __future__ import annotations

from .errors import ConfigError
from .errors import _Problems as _Problems
from .facades import FacadeConfig
from .mcp import McpServerConfig, read_mcp_server
from .models import FALLBACK_CONDITIONS, ModelConfig
from .providers import DEFAULT_BASE_URLS, PROVIDER_TYPES, CooldownConfig, ProviderConfig, ProviderKey, RetryConfig
from .responses import HOSTED_TOOL_POLICIES, ResponsesConfig
from .root import Config, load_config, parse_config
from .section import _Section as _Section
from .server import AuthConfig, ClientKeyConfig, ServerConfig
from .yaml_nodes import _load_nodes as _load_nodes
from .yaml_nodes import _Node as _Node
from .yaml_nodes import _plain as _plain

__all__ = [
    "DEFAULT_BASE_URLS",
    "FALLBACK_CONDITIONS",
    "HOSTED_TOOL_POLICIES",
    "PROVIDER_TYPES",
    "AuthConfig",
    "ClientKeyConfig",
    "Config",
    "ConfigError",
    "CooldownConfig",
    "FacadeConfig",
    "McpServerConfig",
    "ModelConfig",
    "ProviderConfig",
    "ProviderKey",
    "ResponsesConfig",
    "RetryConfig",
    "ServerConfig",
    "load_config",
    "parse_config",
    "read_mcp_server",
]
