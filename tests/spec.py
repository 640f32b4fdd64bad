"""Validate gateway responses against the official OpenAI OpenAPI spec (when it is present).

The spec says 3.1 but still uses 3.0's `nullable: true`; that is rewritten to a null union first.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

SPEC_PATH = Path(__file__).resolve().parents[2] / "shared" / "reference" / "openai-openapi.yaml"


def _denull(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _denull(v) for k, v in node.items()}
        if node.pop("nullable", False) is True:
            return {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_denull(v) for v in node]
    return node


@functools.cache
def _components() -> dict[str, Any] | None:
    if not SPEC_PATH.exists():
        return None
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open() as f:
        spec = yaml.load(f, Loader=loader)
    return {"schemas": _denull(spec["components"]["schemas"])}


def validate_against_spec(schema_name: str, instance: Any) -> None:
    components = _components()
    if components is None:
        pytest.skip("the OpenAI spec is not available at ../shared/reference")
    import jsonschema

    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": components}
    jsonschema.Draft202012Validator(schema).validate(instance)


@functools.cache
def _event_schemas() -> dict[str, str]:
    """Responses stream event type -> the name of its schema (from each event schema's `type` enum)."""
    components = _components()
    if components is None:
        return {}
    out: dict[str, str] = {}
    for ref in components["schemas"]["ResponseStreamEvent"]["anyOf"]:
        name = ref["$ref"].rsplit("/", 1)[-1]
        for kind in components["schemas"][name]["properties"]["type"].get("enum", ()):
            out[kind] = name
    return out


def validate_response_event(event: dict[str, Any]) -> None:
    """One Responses stream event against the schema of its own type (clearer errors than the union)."""
    schemas = _event_schemas()
    if not schemas:
        pytest.skip("the OpenAI spec is not available at ../shared/reference")
    assert event.get("type") in schemas, f"unknown Responses event type {event.get('type')!r}"
    validate_against_spec(schemas[event["type"]], event)
