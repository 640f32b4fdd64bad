"""The dashboard in a real browser: Playwright driving Debian's chromium (/usr/bin/chromium; .ci/run installs it).

Against a real server and the fake OpenAI upstream: sign in, the Overview plots draw the requests just sent,
a key created on the Keys page works with the openai SDK and gets 401 once revoked there, a request shows up
in Live requests, the Playground streams a chat. A viewer key sees no create/revoke buttons and gets 403 from
the API; without a key there is nothing. Every request the page makes stays on the gateway's origin, and the
page logs no error (a CSP violation would be one). Screenshots go to tests/artifacts/ (or
$SWITCHBOARD_ARTIFACTS).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.access.backends import REQUIRE_SERVICES
from tests.access.helpers import ADMIN, MASTER, access_config, bearer, create_key
from tests.fakes.agent_upstream import FakeAgentUpstream
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.fixtures import running_gateway, scripted_config
from tests.server import SwitchboardProcess

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("SWITCHBOARD_ARTIFACTS", Path(__file__).parents[1] / "artifacts"))

if not CHROMIUM.exists():
    if os.environ.get(REQUIRE_SERVICES, "").strip() not in ("", "0"):
        pytest.fail(f"{CHROMIUM} is required ({REQUIRE_SERVICES} is set): apt-get install -y chromium",
                    pytrace=False)
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(fake_openai: FakeOpenAI) -> Iterator[SwitchboardProcess]:
    proc = SwitchboardProcess(access_config(fake_openai, "sqlite:///data/switchboard.db")).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A fresh browser context on the dashboard, recording every request it makes and every error it logs."""

    def __init__(self, browser: Any, server: SwitchboardProcess) -> None:
        self.context = browser.new_context(viewport={"width": 1440, "height": 1000})
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        self.page = self.context.new_page()
        self.urls: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.urls.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: d.accept())
        self.server = server

    def sign_in(self, secret: str) -> None:
        self.page.goto(self.server.url + "/ui")
        self.page.fill("#signin-key", secret)
        self.page.click("#signin button[type=submit]")
        self.page.wait_for_selector("#who")

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()
        origin = self.server.url + "/"
        assert self.urls and all(u.startswith(origin) for u in self.urls), \
            [u for u in self.urls if not u.startswith(origin)]
        assert not self.errors, self.errors


def sdk(server: SwitchboardProcess, secret: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=secret, base_url=server.url + "/v1", max_retries=0)


def test_the_page_is_served_with_a_strict_policy(server: SwitchboardProcess) -> None:
    for path in ("/ui", "/ui/app.js", "/ui/vendor/uPlot.iife.min.js"):
        r = httpx.get(server.url + path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert "set-cookie" not in r.headers
    assert httpx.get(server.url + "/ui/").status_code == 308
    assert httpx.get(server.url + "/ui/../switchboard.yaml").status_code == 404
    assert httpx.get(server.url + "/ui/nothing.js").status_code == 404
    page = httpx.get(server.url + "/ui").text
    assert "<script>" not in page and "style=" not in page  # nothing inline for the CSP to block


def test_admin_walkthrough(browser: Any, server: SwitchboardProcess) -> None:
    with sdk(server, MASTER) as client:
        for i in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"hi {i}"}])
        for _ in client.chat.completions.create(model="other", messages=[{"role": "user", "content": "s"}],
                                                stream=True):
            pass
    ui = Page(browser, server)
    page = ui.page
    ui.sign_in(MASTER)
    assert page.text_content("#who") == "master · admin"

    # Overview: four plots drawn from the requests above.
    page.wait_for_selector("#plots .plot canvas")
    assert page.locator("#plots .plot canvas").count() == 4
    requests_total = page.text_content("#plots .card:first-child .total")
    assert requests_total is not None and int(requests_total) >= 4
    assert page.locator("#plots .plot[data-metric=requests] .u-legend .u-series").count() >= 3  # x + two models
    page.click("#group button[data-value=key]")
    page.wait_for_selector("#group button.on[data-value=key]")
    page.click("#range button[data-value=hour]")
    page.wait_for_selector("#range button.on[data-value=hour]")
    page.wait_for_selector("#plots .plot canvas")
    page.click("#group button[data-value=model]")
    page.wait_for_selector("#group button.on[data-value=model]")
    page.wait_for_timeout(300)
    assert "gpt-4o-mini" in (page.text_content("main") or "")
    ui.shot("overview")

    # Keys: create one (its secret shown once), use it, revoke it, see 401.
    page.click("#nav-keys")
    page.fill("#create-key input[name=name]", "browser-key")
    page.fill("#create-key input[name=models]", "gpt-4o-mini")
    page.fill("#create-key input[name=rpm]", "100")
    page.click("#create-key button[type=submit]")
    page.wait_for_selector("#new-secret")
    secret = page.text_content("#new-secret")
    assert secret is not None and secret.startswith("sk-sb-")
    page.click("#copy-secret")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    with sdk(server, secret) as client:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "k"}])
        assert reply.choices[0].message.content
        page.wait_for_selector("span[data-key-id]:text('browser-key')")
        ui.shot("keys")
        key_id = page.get_attribute("span[data-key-id]:text('browser-key')", "data-key-id")
        page.click(f"button.edit[data-id='{key_id}']")
        page.fill("#edit-key input[name=rpm]", "250")
        page.fill("#edit-key input[name=budget_usd]", "12.5")
        page.click("#edit-key button[type=submit]")
        page.wait_for_selector("#edit-key", state="detached")
        edited = httpx.get(f"{server.url}/admin/keys/{key_id}", headers=ADMIN).json()
        assert (edited["rpm"], edited["budget_usd"], edited["models"]) == (250, 12.5, ["gpt-4o-mini"])
        assert "250 rpm" in (page.text_content("#keys") or "")
        page.click(f"button.revoke[data-id='{key_id}']")
        page.wait_for_selector(f"button.revoke[data-id='{key_id}']", state="detached")
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "k"}])

    # Live requests: a request sent now streams in; a click opens its record.
    page.click("#nav-live")
    page.wait_for_selector("#live-scope:text('This instance only (')")
    with sdk(server, MASTER) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "live"}],
                                       extra_headers={"x-request-id": "req-browser-live"})
    page.click("tr[data-request-id=req-browser-live]")
    page.wait_for_selector("#live-record")
    record = page.text_content("#live-record") or ""
    assert '"model": "gpt-4o-mini"' in record and '"status": 200' in record and "live" not in record.split("req-")[0]
    ui.shot("live")

    # Models and providers, agents: this instance's state.
    page.click("#nav-models")
    page.wait_for_selector(".provider[data-provider=up]")
    assert "closed" in (page.text_content(".provider[data-provider=up]") or "")
    ui.shot("models")
    page.click("#nav-agents")
    page.wait_for_selector("text=MCP servers")

    # Playground: a streamed chat.
    page.click("#nav-playground")
    page.select_option("#pg-model", "gpt-4o-mini")
    page.fill("#pg-prompt", "Hello there")
    page.click("#pg-send")
    page.wait_for_selector("#pg-status:text('Done')")
    assert page.text_content("#pg-chat .msg.assistant .content") == "Hello from gpt-4o-mini"
    ui.shot("playground")
    assert any(u.endswith("/v1/chat/completions") for u in ui.urls)
    ui.close()


def test_viewer_sees_no_buttons_and_cannot_change_keys(browser: Any, server: SwitchboardProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        _, viewer = create_key(client, "", name="browser-viewer", role="viewer")
        target, _ = create_key(client, "", name="browser-target")
        assert client.post("/admin/keys", json={"name": "x"}, headers=bearer(viewer)).status_code == 403
        assert client.delete(f"/admin/keys/{target}", headers=bearer(viewer)).status_code == 403
        assert client.get(f"/admin/keys/{target}", headers=ADMIN).json()["revoked"] is False
    ui = Page(browser, server)
    ui.sign_in(viewer)
    assert ui.page.text_content("#who") == "browser-viewer · viewer"
    ui.page.click("#nav-keys")
    ui.page.wait_for_selector("span[data-key-id]:text('browser-target')")
    assert ui.page.locator("#create-key").count() == 0
    assert ui.page.locator("button.revoke").count() == 0 and ui.page.locator("button.edit").count() == 0
    ui.close()


def test_no_key_no_data(browser: Any, server: SwitchboardProcess) -> None:
    for path in ("/admin/usage/series", "/admin/health", "/admin/agents", "/admin/requests", "/admin/keys"):
        assert httpx.get(server.url + path).status_code == 401, path
    with httpx.Client(base_url=server.url) as client:
        _, plain = create_key(client, "", name="browser-plain")
    ui = Page(browser, server)
    ui.page.goto(server.url + "/ui")
    ui.page.wait_for_selector("#signin")
    assert ui.page.locator("#plots").count() == 0
    ui.page.fill("#signin-key", plain)
    ui.page.click("#signin button[type=submit]")
    ui.page.wait_for_selector("#signin-error:text('no admin role')")
    assert ui.page.locator("#who").count() == 0
    ui.errors = [e for e in ui.errors if "403" not in e]  # the refused sign-in's own request
    ui.close()


AGENT_FILES = {"agents/calc.md": "---\nmodel: small\ntools: [tools]\ndescription: Adds numbers.\n---\nYou add.\n"}


@pytest.fixture(scope="module")
def agent_server(upstream: FakeAgentUpstream) -> Iterator[SwitchboardProcess]:
    with running_gateway(scripted_config(MASTER, upstream, tools=True), extra_files=AGENT_FILES) as proc:
        yield proc


def test_agents_page_and_agent_tool_activity_in_the_playground(browser: Any, agent_server: SwitchboardProcess
                                                               ) -> None:
    ui = Page(browser, agent_server)
    page = ui.page
    ui.sign_in(MASTER)
    page.click("#nav-agents")
    page.wait_for_selector("strong:text-is('calc')")
    text = page.text_content("main") or ""
    assert "tools.add" in text and "connected" in text and "small" in text
    ui.shot("agents")
    page.click("#nav-playground")
    page.select_option("#pg-model", "calc")
    page.fill("#pg-prompt", json.dumps({"calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}))
    page.click("#pg-send")
    page.wait_for_selector("#pg-status:text('Done')")
    assert "Calling tools.add" in (page.text_content("#pg-chat .msg.assistant .tools") or "")
    assert "5" in (page.text_content("#pg-chat .msg.assistant .content") or "")
    ui.shot("playground-agent")
    ui.close()
