"""The `observability:` config section: OTLP trace export, whether traces carry message contents, and
whether the dashboard's live records keep bodies.

```yaml
observability:
  otlp:
    endpoint: http://collector:4318     # OTLP/HTTP; `/v1/traces` is appended unless the URL has a path
    headers: {authorization: "Bearer ${OTLP_TOKEN}"}
    sample_ratio: 1.0                   # of the traces that start here; a client's sampled flag is followed
    service_name: switchboard           # the `service.name` resource attribute
  trace_contents: false                 # true: prompts, answers and tool arguments/results on the spans
  log_bodies: false                     # true: the dashboard's live records keep bodies (secrets redacted)
```

Parsed here, not in the config package (whose root.py only calls `read_observability`); the section
object is config/section.py's `_Section`, duck-typed so this module imports nothing of the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ObservabilityConfig", "OtlpConfig", "read_observability"]


@dataclass(slots=True)
class OtlpConfig:
    endpoint: str  # the full URL spans are POSTed to (`.../v1/traces`)
    headers: dict[str, str] = field(default_factory=dict)
    sample_ratio: float = 1.0
    service_name: str = "switchboard"


@dataclass(slots=True)
class ObservabilityConfig:
    otlp: OtlpConfig | None = None  # None: tracing is off, nothing of OpenTelemetry is imported
    trace_contents: bool = False
    log_bodies: bool = False  # the dashboard's live records keep request bodies and non-stream answers, redacted


def _traces_url(endpoint: str) -> str:
    """A collector's base URL gets the OTLP/HTTP traces path, as OTEL_EXPORTER_OTLP_ENDPOINT does."""
    parts = urlsplit(endpoint)
    if parts.path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def read_observability(s: Any) -> ObservabilityConfig:
    """`s`: config.py's `_Section` of `observability`."""
    cfg = ObservabilityConfig(trace_contents=s.get("trace_contents", bool, False),
                              log_bodies=s.get("log_bodies", bool, False))
    node = s.node("otlp")
    if node is not None and node.value is not None:
        o = s.sub(node, "observability.otlp")
        endpoint = o.get("endpoint", str, required=True)
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            o.report(o.items.get("endpoint"), "`observability.otlp.endpoint` must be an http:// or https:// URL "
                     f"(the collector's OTLP/HTTP port, e.g. http://collector:4318), got `{endpoint}`")
        ratio = o.get("sample_ratio", float, 1.0)
        if not 0.0 <= ratio <= 1.0:
            o.report(o.items.get("sample_ratio"), "`observability.otlp.sample_ratio` must be from 0 to 1")
            ratio = 1.0
        service = o.get("service_name", str, "switchboard") or "switchboard"
        cfg.otlp = OtlpConfig(_traces_url(endpoint), o.str_map("headers"), ratio, service)
        o.done()
    s.done()
    return cfg
