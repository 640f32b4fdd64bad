"""The admin API: `/admin/keys` CRUD and `/admin/usage`, for the master key and keys with an admin role.

Reads need the `viewer` or `admin` role, changes the `admin` role (the master key is `admin`);
`authorize` is the one check, also used by the dashboard's APIs (`dashboard/`).

POST /admin/keys creates a key and is the only response that ever contains its secret
(`key`); DELETE revokes (the row stays, so usage keeps its key id). Declared as plain routes
(`AdminApi.routes()`); each handler checks the caller's role before it reads a body.
"""

from __future__ import annotations

from ..asgi import JSONResponse, Request, Response
from ..errors import GatewayError, bad_request
from ..routes import PlainRoute
from ..store import UsageQuery
from .auth import Authenticator, Principal
from .control import AccessControl
from .keys import parse_expiry, validate_key_fields

__all__ = ["AdminApi", "authorize"]


def _not_found(key_id: str) -> GatewayError:
    return GatewayError(404, f"No API key with id `{key_id[:64]}`.", "invalid_request_error", param="id",
                        code="key_not_found", retryable=False)


class AdminApi:
    def __init__(self, access: AccessControl, auth: Authenticator) -> None:
        self.access = access
        self.auth = auth

    def routes(self) -> list[PlainRoute]:
        return [PlainRoute("POST", "/admin/keys", self.create),
                PlainRoute("GET", "/admin/keys", self.list_keys),
                PlainRoute("GET", "/admin/keys/{id}", self.get),
                PlainRoute("PATCH", "/admin/keys/{id}", self.update),
                PlainRoute("DELETE", "/admin/keys/{id}", self.revoke),
                PlainRoute("GET", "/admin/usage", self.usage)]

    async def _reader(self, request: Request) -> None:
        await authorize(self.auth, request, write=False)

    async def _master(self, request: Request) -> None:
        await authorize(self.auth, request, write=True)

    async def create(self, request: Request) -> Response:
        await self._master(request)
        fields = validate_key_fields(await request.json_object(), creating=True)
        key, secret = await self.access.keys.create(fields)
        return JSONResponse({**key.public(), "key": secret}, status=201)

    async def list_keys(self, request: Request) -> Response:
        await self._reader(request)
        keys = await self.access.store.list_keys()
        return JSONResponse({"object": "list", "data": [k.public() for k in keys]})

    async def get(self, request: Request) -> Response:
        await self._reader(request)
        key_id = request.state["path_params"]["id"]
        key = await self.access.store.get_key(key_id)
        if key is None:
            raise _not_found(key_id)
        return JSONResponse(key.public())

    async def update(self, request: Request) -> Response:
        await self._master(request)
        key_id = request.state["path_params"]["id"]
        changes = validate_key_fields(await request.json_object(), creating=False)
        key = await self.access.keys.update(key_id, changes)
        if key is None:
            raise _not_found(key_id)
        return JSONResponse(key.public())

    async def revoke(self, request: Request) -> Response:
        await self._master(request)
        key_id = request.state["path_params"]["id"]
        key = await self.access.keys.update(key_id, {"revoked": True})
        if key is None:
            raise _not_found(key_id)
        return JSONResponse(key.public())

    async def usage(self, request: Request) -> Response:
        await self._reader(request)
        params = request.query_params()
        unknown = set(params) - {"key_id", "model", "since", "until", "status", "limit"}
        if unknown:
            name = sorted(unknown)[0]
            raise bad_request(f"Unknown query parameter `{name}`.", param=name, code="unknown_parameter")
        query = UsageQuery(key_id=params.get("key_id") or None, model=params.get("model") or None,
                           since=_time_param(params, "since"), until=_time_param(params, "until"),
                           status=_int_param(params, "status"), limit=_int_param(params, "limit") or 100)
        if not 1 <= query.limit <= 10000:
            raise bad_request("`limit` must be between 1 and 10000.", param="limit", code="invalid_value")
        await self.access.usage.flush()  # this instance's own recent requests are in the answer
        rows, totals = await self.access.store.query_usage(query)
        return JSONResponse({"object": "list", "data": [r.public() for r in rows], "totals": totals.public()})


async def authorize(auth: Authenticator, request: Request, write: bool) -> Principal:
    """The caller, if its role allows a read (`viewer` or `admin`) or a change (`admin`); else 401/403."""
    if not auth.enabled:
        raise GatewayError(403, "The admin API is disabled: set auth.master_key to use it.", "permission_error",
                           code="admin_disabled", retryable=False)
    principal = await auth.authenticate(request.headers)
    role = principal.role
    if role == "admin" or (role == "viewer" and not write):
        request.principal = principal
        return principal
    if role == "viewer":
        raise GatewayError(403, "This key has the `viewer` role: it may read the admin API but not change anything; "
                           "an `admin` key or the master key may.", "permission_error", code="admin_role_required",
                           retryable=False)
    raise GatewayError(403, "The admin API requires the master key or a key with the `viewer` or `admin` role.",
                       "permission_error", code="admin_role_required", retryable=False)


def _time_param(params: dict[str, str], name: str) -> float | None:
    raw = params.get(name)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        return parse_expiry(raw, name)


def _int_param(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if not raw:
        return None
    if not raw.isdigit():
        raise bad_request(f"`{name}` must be an integer.", param=name, code="invalid_value")
    return int(raw)
