"""The C span encoder (_otlp_span.c): otlp_encoding.encode_span where it is built."""

from collections.abc import Callable
from typing import Any

def encode_span(span: Any) -> bytes: ...
def set_fallback(func: Callable[[Any], bytes]) -> None: ...
