"""The config of `switchboard serve` when there is no config file: providers from the environment.

Owns the conventions (README "First run"), turned into YAML text that goes through the same parser
as `switchboard.yaml` (so defaults and checks are the same); keys stay `${VAR}` references in it,
so the text holds no secret:

- `OPENAI_API_KEY` and/or `OPENAI_BASE_URL` -> provider `openai` (api.openai.com by default)
- `ANTHROPIC_API_KEY` (+ `ANTHROPIC_BASE_URL`) -> provider `anthropic`
- `OLLAMA_BASE_URL`, `VLLM_BASE_URL`, `LMSTUDIO_BASE_URL` (+ `<SAME>_API_KEY`) -> `ollama`, `vllm`,
  `lmstudio`: OpenAI-compatible servers on your machine
- `SWITCHBOARD_<NAME>_BASE_URL` (+ `SWITCHBOARD_<NAME>_API_KEY`) -> provider `<name>` (lower case),
  any other OpenAI-compatible server; it replaces a provider of the same name from the lines above
- `SWITCHBOARD_MASTER_KEY` -> `auth.master_key`

Every OpenAI-compatible one has `list_models: true` (its models show in /v1/models as
`<provider>/<model>`); a base URL without a scheme gets `http://`, one without a path gets `/v1`.
Models are reachable as `<provider>/<model>`; the store is `switchboard.db` in the working directory.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .config import Config, parse_config

__all__ = ["NO_PROVIDER_HELP", "EnvProvider", "config_from_environment", "environment_yaml",
           "providers_from_environment"]

SOURCE = "(environment)"  # the "file" named in errors and in the banner
LOCAL_TIMEOUT_S = 300  # a local server may load the model on the first request: longer than the default 60 s

NO_PROVIDER_HELP = (
    "No provider is configured: there is no switchboard.yaml here and none of the variables below is set, "
    "so no model is served yet. To add one, set OPENAI_API_KEY (plus OPENAI_BASE_URL for any other "
    "OpenAI-compatible API), ANTHROPIC_API_KEY, OLLAMA_BASE_URL, VLLM_BASE_URL or LMSTUDIO_BASE_URL (a server on "
    "your machine, e.g. OLLAMA_BASE_URL=http://127.0.0.1:11434), or SWITCHBOARD_<NAME>_BASE_URL (plus "
    "SWITCHBOARD_<NAME>_API_KEY) for a provider named <name>, and restart; its models are then served as "
    "<provider>/<model>. Or run `switchboard init` to write a commented switchboard.yaml to edit."
)

# (provider name, variable prefix): OpenAI-compatible servers usually run on your machine.
_LOCAL_SERVERS = (("ollama", "OLLAMA"), ("vllm", "VLLM"), ("lmstudio", "LMSTUDIO"))
_GENERIC = re.compile(r"^SWITCHBOARD_([A-Z0-9][A-Z0-9_]*)_BASE_URL$")


@dataclass(frozen=True, slots=True)
class EnvProvider:
    """A provider found in the environment."""

    name: str
    type: str  # "openai" or "anthropic"
    base_url: str | None  # None: the type's default
    key_var: str | None  # the variable holding its API key, if set
    from_vars: tuple[str, ...]  # the variables it came from (for the banner and the YAML comments)
    local: bool = False


def _openai_base_url(raw: str) -> str:
    """`127.0.0.1:11434` -> `http://127.0.0.1:11434/v1`: a scheme and the usual `/v1` when missing."""
    url = raw.strip()
    if "://" not in url:
        url = "http://" + url
    if urlsplit(url).path in ("", "/"):
        url = url.rstrip("/") + "/v1"
    return url


def _set(environ: dict[str, str], name: str) -> bool:
    return bool(environ.get(name, "").strip())


def providers_from_environment(environ: dict[str, str]) -> list[EnvProvider]:
    found: dict[str, EnvProvider] = {}
    if _set(environ, "OPENAI_API_KEY") or _set(environ, "OPENAI_BASE_URL"):
        base = environ.get("OPENAI_BASE_URL", "").strip()
        found["openai"] = EnvProvider(
            "openai", "openai", _openai_base_url(base) if base else None,
            "OPENAI_API_KEY" if _set(environ, "OPENAI_API_KEY") else None,
            tuple(v for v in ("OPENAI_API_KEY", "OPENAI_BASE_URL") if _set(environ, v)))
    if _set(environ, "ANTHROPIC_API_KEY"):
        base = environ.get("ANTHROPIC_BASE_URL", "").strip()
        found["anthropic"] = EnvProvider(
            "anthropic", "anthropic", base or None, "ANTHROPIC_API_KEY",
            tuple(v for v in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL") if _set(environ, v)))
    servers = list(_LOCAL_SERVERS)
    servers += sorted((m.group(1).lower(), f"SWITCHBOARD_{m.group(1)}")
                      for var in environ if (m := _GENERIC.match(var)))
    for name, prefix in servers:
        url_var, key_var = f"{prefix}_BASE_URL", f"{prefix}_API_KEY"
        if not _set(environ, url_var):
            continue
        has_key = _set(environ, key_var)
        found[name] = EnvProvider(name, "openai", _openai_base_url(environ[url_var]), key_var if has_key else None,
                                  (url_var, key_var) if has_key else (url_var,), local=True)
    return list(found.values())


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def environment_yaml(environ: dict[str, str]) -> str:
    """The config text equivalent to the environment."""
    lines = [
        "# The config of `switchboard serve` without a config file, from the environment.",
        'auth: {master_key: "${SWITCHBOARD_MASTER_KEY}"}',
        'store: {url: "sqlite:///switchboard.db"}',
        "providers:",
    ]
    providers = providers_from_environment(environ)
    if not providers:
        lines[-1] += " {}"
    for p in providers:
        lines.append(f"  {_q(p.name)}:  # {', '.join(p.from_vars)}")
        lines.append(f"    type: {p.type}")
        if p.base_url is not None:
            lines.append(f"    base_url: {_q(p.base_url)}")
        if p.key_var is not None:
            lines.append(f'    keys: ["${{{p.key_var}}}"]')
        if p.type == "openai":
            lines.append("    list_models: true")
        if p.local:
            lines.append(f"    timeout_s: {LOCAL_TIMEOUT_S}")
    return "\n".join(lines) + "\n"


def config_from_environment(environ: dict[str, str] | None = None, base_dir: Path | None = None) -> Config:
    """The `Config` of `environment_yaml`, parsed as any config file is (relative paths: `base_dir`, the cwd)."""
    env = dict(os.environ) if environ is None else environ
    return parse_config(environment_yaml(env), SOURCE, env, base_dir=base_dir or Path.cwd())
