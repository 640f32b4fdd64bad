"""Tracing off costs nothing and imports nothing (issue 17): without `observability.otlp`, serving
requests loads no `opentelemetry` module and sends upstreams no trace header, even when the client
sent one; with it configured but the `otel` extra missing, startup fails naming the extra.

Each case runs in a fresh interpreter (`sys.modules` of the test process has the SDK already)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SERVE_WITHOUT_TRACING = textwrap.dedent("""
    import json, sys, tempfile
    from tests.fakes.openai_upstream import FakeOpenAI
    from tests.inprocess import InProcessApp

    fake = FakeOpenAI().start()
    app = InProcessApp(f'''
    providers:
      up: {{type: openai, base_url: "{fake.base_url}", keys: [sk-up-key], retries: {{max: 0}}}}
    models:
      m: up/gpt-4o-mini
    store: {{url: "sqlite:///{tempfile.mkdtemp()}/usage.db"}}
    ''').start()
    headers = {"content-type": "application/json",
               "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "v=1"}
    for stream in (False, True):
        body = json.dumps({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
        answer = app.request("POST", "/v1/chat/completions", body.encode(), headers)
        assert answer.status == 200, answer.body
    app.stop()
    fake.stop()
    print(json.dumps({
        "otel_modules": sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"),
        "upstream_headers": [sorted(k.lower() for k in r["headers"]) for r in fake.requests],
        "record_has_tracer": app.app.gateway.tracer is not None,
    }))
""")

EXTRA_MISSING = textwrap.dedent("""
    import sys
    import tempfile

    class NoOpenTelemetry:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "opentelemetry":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoOpenTelemetry())
    from switchboard.config import ConfigError, parse_config
    from switchboard.app import create_app
    try:
        create_app(parse_config(f'''
    providers: {{up: {{type: openai, base_url: "http://127.0.0.1:9", keys: [k]}}}}
    observability: {{otlp: {{endpoint: "http://127.0.0.1:4318"}}}}
    store: {{url: "sqlite:///{tempfile.mkdtemp()}/usage.db"}}
    '''))
    except ConfigError as exc:
        print("ConfigError:", exc)
    else:
        print("started")
""")


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_not_configured_imports_nothing_and_adds_no_header() -> None:
    seen = json.loads(_run(SERVE_WITHOUT_TRACING))
    assert seen["otel_modules"] == []
    assert seen["record_has_tracer"] is False
    assert len(seen["upstream_headers"]) == 2
    for names in seen["upstream_headers"]:  # the client's trace context is not forwarded: the gateway is off
        assert "traceparent" not in names and "tracestate" not in names


def test_configured_without_the_extra_is_a_startup_error_naming_it() -> None:
    out = _run(EXTRA_MISSING)
    assert out.startswith("ConfigError:"), out
    assert "pip install 'switchboard[otel]'" in out and "observability.otlp" in out
