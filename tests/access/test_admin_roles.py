"""Admin roles on virtual keys: `viewer` reads the admin API, `admin` also changes keys, others get 403."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.access.helpers import ADMIN, CHAT, access_config, bearer, create_key
from tests.fakes.openai_upstream import FakeOpenAI
from tests.server import SwitchboardProcess


@pytest.fixture(scope="module")
def server(fake_openai: FakeOpenAI) -> Iterator[SwitchboardProcess]:
    proc = SwitchboardProcess(access_config(fake_openai, "sqlite:///data/switchboard.db")).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server: SwitchboardProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_the_cli_sets_and_lists_roles(server: SwitchboardProcess, client: httpx.Client) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "switchboard.cli", *args, "--config", str(server.config_path)],
                              capture_output=True, text=True, timeout=30, cwd=server.dir)

    made = cli("keys", "create", "--name", "cli-viewer", "--role", "viewer", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["role"] == "viewer"
    assert client.get("/admin/keys", headers=bearer(key["key"])).status_code == 200
    listing = cli("keys", "list")
    assert "ROLE" in listing.stdout and "viewer" in listing.stdout
    assert cli("keys", "update", key["id"], "--role", "none").returncode == 0
    assert client.get(f"/admin/keys/{key['id']}", headers=ADMIN).json()["role"] is None


def test_a_new_key_has_no_role_and_no_admin_access(client: httpx.Client) -> None:
    key_id, secret = create_key(client, "")
    assert client.get(f"/admin/keys/{key_id}", headers=ADMIN).json()["role"] is None
    for method, path in (("GET", "/admin/keys"), ("GET", "/admin/usage"), ("POST", "/admin/keys")):
        r = client.request(method, path, headers=bearer(secret), json={"name": "x"})
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"]["code"] == "admin_role_required"
    assert client.post("/v1/chat/completions", json=CHAT, headers=bearer(secret)).status_code == 200


def test_viewer_reads_but_cannot_change(client: httpx.Client) -> None:
    _, viewer = create_key(client, "", role="viewer")
    target, _ = create_key(client, "")
    headers = bearer(viewer)
    assert client.get("/admin/keys", headers=headers).status_code == 200
    assert client.get(f"/admin/keys/{target}", headers=headers).json()["id"] == target
    assert client.get("/admin/usage", headers=headers).status_code == 200
    for method, path, body in (("POST", "/admin/keys", {"name": "sneaky"}),
                               ("PATCH", f"/admin/keys/{target}", {"rpm": 5}),
                               ("PATCH", f"/admin/keys/{target}", {"role": "admin"}),
                               ("DELETE", f"/admin/keys/{target}", None)):
        r = client.request(method, path, headers=headers, json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert "viewer" in r.json()["error"]["message"]
    assert client.get(f"/admin/keys/{target}", headers=ADMIN).json()["revoked"] is False


def test_admin_key_manages_keys_and_loses_access_when_demoted(client: httpx.Client) -> None:
    admin_id, admin = create_key(client, "", role="admin")
    r = client.post("/admin/keys", json={"name": "made-by-admin", "role": "viewer"}, headers=bearer(admin))
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["role"] == "viewer" and made["key"].startswith("sk-sb-")
    assert client.delete(f"/admin/keys/{made['id']}", headers=bearer(admin)).json()["revoked"] is True
    assert client.get("/admin/keys", headers=bearer(made["key"])).status_code == 401
    # The master key takes the role away: the change applies on this instance at once.
    assert client.patch(f"/admin/keys/{admin_id}", json={"role": None}, headers=ADMIN).json()["role"] is None
    assert client.get("/admin/keys", headers=bearer(admin)).status_code == 403


def test_bad_role_is_a_400_naming_the_field(client: httpx.Client) -> None:
    r = client.post("/admin/keys", json={"name": "x", "role": "root"}, headers=ADMIN)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "role"


def test_no_key_is_401(client: httpx.Client) -> None:
    assert client.get("/admin/keys").status_code == 401
