"""The `responses:` section: how long stored Responses API conversations live and how large one may
be, what the headend does with hosted tools it cannot bridge, and the `mcp` tool URLs a client may name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .section import _Section

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
