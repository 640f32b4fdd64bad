"""`POST /v1/embeddings`, with both encodings whatever the upstream returns.

The official SDKs ask for `encoding_format: "base64"` by default (little-endian float32). Some
OpenAI-compatible servers ignore that and return floats, so the answer is converted to the encoding
the client asked for.
"""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Any

from ..asgi import JSONResponse, Request, Response
from ..gateway import Gateway
from ..request_record import RequestRecord
from ..routes import ApiRoute
from .validation import validate_embedding

__all__ = ["ROUTES", "base64_to_floats", "embeddings", "floats_to_base64"]

_SWAP = sys.byteorder != "little"


def floats_to_base64(values: list[float]) -> str:
    packed = array("f", values)
    if _SWAP:
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def base64_to_floats(text: str) -> list[float]:
    packed = array("f")
    packed.frombytes(base64.b64decode(text))
    if _SWAP:
        packed.byteswap()
    return packed.tolist()


def _encode(body: dict[str, Any], want_base64: bool) -> None:
    for item in body.get("data") or ():
        if not isinstance(item, dict):
            continue
        vector = item.get("embedding")
        if want_base64 and isinstance(vector, list):
            item["embedding"] = floats_to_base64(vector)
        elif not want_base64 and isinstance(vector, str):
            item["embedding"] = base64_to_floats(vector)


async def embeddings(gw: Gateway, request: Request, record: RequestRecord) -> Response:
    body = await request.json_object()
    model = validate_embedding(body)
    await gw.admit(request, model, record)
    result = await gw.router.embeddings(body, model, record)
    _encode(result.body, body.get("encoding_format") == "base64")
    return JSONResponse(result.body, headers=result.headers)


ROUTES = [ApiRoute("POST", "/embeddings", embeddings)]
