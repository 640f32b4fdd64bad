"""The route table: which provider/model targets a public model name reaches, primary first.

A configured model (`models.X.route` + `fallbacks`) or a direct `provider/model` name of a
configured provider. Built from the config alone, so agents can check their model names before the
router exists.
"""

from __future__ import annotations

from collections.abc import Collection

from ..config import Config
from ..errors import GatewayError, model_not_found
from .deployment import Route

__all__ = ["RouteTable", "parse_target"]


def parse_target(target: str) -> Route:
    provider, _, model = target.partition("/")
    return Route(provider, model)


class RouteTable:
    def __init__(self, config: Config, providers: Collection[str]) -> None:
        self.providers = providers
        self.by_model: dict[str, list[Route]] = {
            name: [parse_target(t) for t in [model.route, *model.fallbacks]] for name, model in config.models.items()}

    def routes(self, model: str) -> list[Route]:
        """The targets for a public model name, primary first; 404 if there are none."""
        routes = self.by_model.get(model)
        if routes is not None:
            return routes
        provider, sep, upstream = model.partition("/")
        if sep and upstream and provider in self.providers:
            return [Route(provider, upstream)]
        raise model_not_found(model)

    def knows(self, model: str) -> bool:
        try:
            self.routes(model)
        except GatewayError:
            return False
        return True
