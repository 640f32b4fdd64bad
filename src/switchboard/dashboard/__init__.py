"""The admin dashboard (issue 16): its JSON APIs and the single-page app at `/ui`.

- `usage_api.py`: fleet-wide usage from the shared store (series, latency, top keys, budgets);
- `status_api.py`: this instance's health and agents; `live.py`: its recent requests (ring buffer + SSE);
- `series.py`: bucket edges in a time zone and the sums per bucket; `static_files.py`: the page's files.

`Dashboard(gateway).routes()` gives every route; building it installs the observers that feed it.
"""

from __future__ import annotations

from ..gateway import Gateway
from ..routes import PlainRoute
from .live import RecentRequests
from .static_files import StaticFiles
from .status_api import StatusApi
from .usage_api import UsageApi

__all__ = ["Dashboard"]


class Dashboard:
    def __init__(self, gateway: Gateway) -> None:
        auth = gateway.auth
        names = {"master": "master", **{f"cfg:{k.name}": k.name for k in gateway.config.auth.keys}}
        self.usage = UsageApi(gateway.access, auth, names)
        self.status = StatusApi(gateway, auth)
        self.status.install()
        self.recent = RecentRequests(auth)
        self.recent.install(gateway)
        self.static = StaticFiles()

    def routes(self) -> list[PlainRoute]:
        return [*self.usage.routes(), *self.status.routes(), *self.recent.routes(), *self.static.routes()]
