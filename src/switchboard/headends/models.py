"""`GET /v1/models` and `GET /v1/models/{id}`: the models a caller may use.

Lists the configured aliases, the upstream models of providers with `list_models: true` (fetched
and cached for a minute; a provider that fails to answer is left out, not fatal), and the agents.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..access.auth import Principal
from ..asgi import JSONResponse, Request, Response
from ..errors import GatewayError, model_not_found
from ..gateway import Gateway
from ..providers.base import ModelLister
from ..request_record import RequestRecord
from ..routes import ApiRoute

__all__ = ["ModelCatalog"]

log = logging.getLogger("switchboard")
CACHE_S = 60.0


class ModelCatalog:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    def routes(self) -> list[ApiRoute]:
        return [ApiRoute("GET", "/models", self.list), ApiRoute("GET", "/models/{id:path}", self.retrieve)]

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
        if self.gw.agents is not None:
            out.extend(self.gw.agents.model_entries())
        listers = [(n, p) for n, p in self.gw.providers.items() if p.config.list_models and isinstance(p, ModelLister)]
        for models in await asyncio.gather(*(self._upstream(n, p) for n, p in listers)):
            out.extend(models)
        return out

    async def list(self, gw: Gateway, request: Request, record: RequestRecord) -> Response:
        principal, facade = _principal(request), request.facade
        models = [m for m in await self.all_models()
                  if principal.may_use(m["id"]) and (facade is None or facade.allows(m["id"]))]
        return JSONResponse({"object": "list", "data": models})

    async def retrieve(self, gw: Gateway, request: Request, record: RequestRecord) -> Response:
        principal = _principal(request)
        model_id: str = request.state["path_params"]["id"]
        if not principal.may_use(model_id) or (request.facade is not None and not request.facade.allows(model_id)):
            raise model_not_found(model_id)
        for model in await self.all_models():
            if model["id"] == model_id:
                return JSONResponse(model)
        if "/" in model_id and self.gw.router.knows(model_id):  # a direct provider/model name
            return JSONResponse(self._model(model_id, model_id.partition("/")[0]))
        raise model_not_found(model_id)


def _principal(request: Request) -> Principal:
    principal = request.principal
    assert principal is not None, "API routes are authenticated before their handler runs"
    return principal
