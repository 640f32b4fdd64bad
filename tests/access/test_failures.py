"""When the store or the shared state is down: clear errors, never a 500, never a leaked secret."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from switchboard.access.auth import Principal
from switchboard.access.control import AccessControl
from switchboard.access.keys import hash_secret
from switchboard.config import Config, parse_config
from switchboard.errors import GatewayError
from switchboard.gateway import Gateway, RequestRecord
from switchboard.shared_state import Grant, LeaseRequest
from switchboard.store import VirtualKey, build_store

CONFIG = """
auth: {master_key: sk-master-fail}
providers:
  up: {type: openai, base_url: "http://127.0.0.1:9", keys: [sk-up]}
models:
  m: {route: up/m, rpm: 5}
"""


class DownState:
    async def start(self) -> None: ...
    async def aclose(self) -> None: ...

    async def ping(self) -> None:
        raise ConnectionError("redis is down")

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[Grant]:
        raise ConnectionError("redis is down")

    async def mark(self, key: str, ttl_s: float) -> None: ...

    async def marked(self, key: str) -> float:
        return 0.0


def _config(tmp_path: Path) -> Config:
    return parse_config(CONFIG, base_dir=tmp_path)


async def test_shared_state_outage_fails_open(tmp_path: Path) -> None:
    access = AccessControl(_config(tmp_path), state=DownState())  # type: ignore[arg-type]
    await access.start()
    try:
        key = VirtualKey(id="key_x", name="x", secret_hash="0" * 64, hint="sk-sb-...0000", rpm=1, budget_usd=1.0)
        record = RequestRecord(request_id="req_1", endpoint="/chat/completions")
        await access.admit(Principal(key_id="key_x", name="x", virtual=key), "m", record)
        assert record.admission is not None and record.headers == {}
    finally:
        await access.aclose()


async def test_store_outage_is_a_503_without_the_key(tmp_path: Path) -> None:
    config = _config(tmp_path)
    access = AccessControl(config, store=build_store("postgresql://nobody@127.0.0.1:9/none", tmp_path))
    gw = Gateway(config, access=access)  # never started: every lookup fails like a database that went away
    secret = "sk-sb-" + "a" * 43
    with pytest.raises(GatewayError) as err:
        await gw.auth.authenticate({"authorization": f"Bearer {secret}"})
    assert err.value.status == 503 and secret not in err.value.message
    assert (await gw.auth.authenticate({"authorization": "Bearer sk-master-fail"})).is_master
    assert hash_secret(secret) not in err.value.message
