"""`GET /ui`: the dashboard's single-page app, served from the package's `static/` files.

The files are read once at startup into memory (a fixed set: nothing outside `static/` can be named),
and every answer carries a strict Content-Security-Policy (scripts, styles and connections from this
origin only, no inline scripts or styles, no framing), `X-Frame-Options: DENY`, `nosniff` and no
referrer. `/ui/` redirects to `/ui` so the page's relative URLs resolve under any path prefix.
"""

from __future__ import annotations

from importlib import resources

from ..asgi import Request, Response
from ..errors import GatewayError
from ..routes import PlainRoute

__all__ = ["CSP", "SECURITY_HEADERS", "StaticFiles"]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"content-security-policy": CSP, "x-frame-options": "DENY", "x-content-type-options": "nosniff",
                    "referrer-policy": "no-referrer", "cache-control": "no-cache"}
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml", ".md": "text/plain",
          ".LICENSE": "text/plain; charset=utf-8"}


def _load() -> dict[str, tuple[bytes, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    root = resources.files("switchboard.dashboard") / "static"

    def walk(node: object, prefix: str) -> None:
        for child in node.iterdir():  # type: ignore[attr-defined]
            name = prefix + child.name
            if child.is_dir():
                walk(child, name + "/")
                continue
            suffix = "." + child.name.rsplit(".", 1)[-1] if "." in child.name else ""
            if suffix in _TYPES:
                files[name] = (child.read_bytes(), _TYPES[suffix])

    walk(root, "")
    return files


class StaticFiles:
    def __init__(self) -> None:
        self.files = _load()

    def routes(self) -> list[PlainRoute]:
        return [PlainRoute("GET", "/ui", self.index), PlainRoute("GET", "/ui/{path:path}", self.file)]

    async def index(self, request: Request) -> Response:
        raw_path: str = request.scope["path"]
        if raw_path.endswith("/"):
            return Response(b"", 308, {"location": raw_path.rstrip("/"), **SECURITY_HEADERS}, "text/plain")
        body, content_type = self.files["index.html"]
        return Response(body, 200, dict(SECURITY_HEADERS), content_type)

    async def file(self, request: Request) -> Response:
        found = self.files.get(request.state["path_params"]["path"])
        if found is None:
            raise GatewayError(404, "No such dashboard file.", "invalid_request_error", code="unknown_url",
                               retryable=False)
        body, content_type = found
        return Response(body, 200, dict(SECURITY_HEADERS), content_type)
