"""Presets for OpenAI-compatible clouds (`preset: NAME` on a `type: openai` provider): data only.

Each preset is the values of provider config keys (`base_url`, `key_header`, the quirk keys) that
`config.py` uses for every key the provider does not set itself. Imports nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS"]

PRESETS: dict[str, dict[str, Any]] = {}
