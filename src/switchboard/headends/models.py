"""`GET /v1/models` and `GET /v1/models/{id}`: the models a caller may use.

Lists the configured aliases, the upstream models of providers with `list_models: true` (fetched
and cached for a minute; a provider that fails to answer is left out, not fatal), and any extra
model sources registered by other parts of the gateway (agents).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..asgi import JSONResponse, Request, Response
from ..errors import GatewayError, model_not_found
from ..gateway import Gateway, RequestRecord
from ..providers.base import ModelLister

__all__ = ["ModelCatalog"]

log = logging.getLogger("switchboard")
CACHE_S = 60.0


class ModelCatalog:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self.extra_sources: list[Callable[[], list[dict[str, Any]]]] = []

    def _model(self, model_id: str, owned_by: str, **extra: Any) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": self.gw.started_at, "owned_by": owned_by, **extra}

    async def _upstream(self, name: str, provider: ModelLister) -> list[dict[str, Any]]:
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is not None and now - cached[0] < CACHE_S:
            return cached[1]
        keys = self.gw.providers[name].config.keys
        try:
            listed = await provider.list_models(keys[0].value if keys else None)
        except GatewayError as err:
            log.warning("listing models of provider %s failed: %s", name, err.message)
            return cached[1] if cached else []
        models = [self._model(f"{name}/{m['id']}", name) for m in listed]
        self._cache[name] = (now, models)
        return models

    async def all_models(self) -> list[dict[str, Any]]:
        out = [self._model(name, "switchboard") for name in self.gw.config.models]
        for source in self.extra_sources:
            out.extend(source())
        listers = [(n, p) for n, p in self.gw.providers.items() if p.config.list_models and isinstance(p, ModelLister)]
        for models in await asyncio.gather(*(self._upstream(n, p) for n, p in listers)):
            out.extend(models)
        return out

    async def list(self, request: Request, record: RequestRecord) -> Response:
        principal = await self.gw.authorize(request, None, record)
        models = [m for m in await self.all_models() if principal.may_use(m["id"])]
        return JSONResponse({"object": "list", "data": models})

    async def retrieve(self, request: Request, record: RequestRecord, model_id: str) -> Response:
        principal = await self.gw.authorize(request, None, record)
        if not principal.may_use(model_id):
            raise model_not_found(model_id)
        for model in await self.all_models():
            if model["id"] == model_id:
                return JSONResponse(model)
        if "/" in model_id and self.gw.router.knows(model_id):  # a direct provider/model name
            return JSONResponse(self._model(model_id, model_id.partition("/")[0]))
        raise model_not_found(model_id)
