// The dashboard shell: sign-in, navigation (hash routes), and the page modules.
import { get, key, setKey, ApiError } from "./api.js";
import { h } from "./dom.js";
import { overview } from "./pages/overview.js";
import { keysPage } from "./pages/keys.js";
import { modelsPage } from "./pages/models.js";
import { agentsPage } from "./pages/agents.js";
import { livePage } from "./pages/live.js";
import { playground } from "./pages/playground.js";

const PAGES = [
  ["overview", "Overview", overview], ["keys", "Keys", keysPage], ["models", "Models & providers", modelsPage],
  ["agents", "Agents & MCP", agentsPage], ["live", "Live requests", livePage], ["playground", "Playground", playground],
];
const root = document.getElementById("app");
let me = null;
let cleanup = null;

function signIn(message) {
  me = null;
  const input = h("input", { type: "password", id: "signin-key", placeholder: "sk-…", autocomplete: "off", required: true });
  const error = h("div", { class: "error", id: "signin-error" }, message || "");
  const form = h("form", { class: "card signin", id: "signin", onsubmit: async event => {
    event.preventDefault();
    setKey(input.value.trim());
    try {
      me = await get("/admin/me");
      start();
    } catch (err) {
      setKey(null);
      error.textContent = err instanceof ApiError && err.status === 403
        ? "This key has no admin role: use the master key or a key with the viewer or admin role."
        : err.message;
    }
  } },
  h("h1", {}, "Switchboard"), h("p", { class: "muted" }, "Sign in with the master key, or a virtual key with the viewer or admin role. The key stays in this tab only."),
  input, h("button", { class: "primary", type: "submit" }, "Sign in"), error);
  root.replaceChildren(form);
  input.focus();
}

function shell() {
  const nav = h("nav", {}, PAGES.map(([id, title]) => h("a", { href: "#/" + id, id: "nav-" + id }, title)));
  const out = h("button", { id: "signout", onclick: () => { setKey(null); location.hash = ""; signIn(); } }, "Sign out");
  const header = h("header", { class: "top" }, h("span", { class: "brand" }, "Switchboard"), nav,
    h("span", { class: "who", id: "who" }, `${me.name} · ${me.role}`), out);
  const main = h("main", { id: "page" });
  root.replaceChildren(header, main);
  return main;
}

async function route() {
  if (!me) return;
  const id = (location.hash.match(/^#\/(\w+)/) || [])[1] || "overview";
  const page = PAGES.find(p => p[0] === id) || PAGES[0];
  const main = document.getElementById("page") || shell();
  document.querySelectorAll("header nav a").forEach(a => a.classList.toggle("active", a.id === "nav-" + page[0]));
  if (cleanup) { cleanup(); cleanup = null; }
  main.replaceChildren();
  try {
    cleanup = (await page[2](main, me)) || null;
  } catch (err) {
    main.append(h("div", { class: "error" }, err.message));
  }
}

function start() {
  shell();
  route();
}

window.addEventListener("hashchange", route);
window.addEventListener("switchboard:signed-out", () => signIn("Your key is no longer valid; sign in again."));

(async () => {
  if (!key()) return signIn();
  try {
    me = await get("/admin/me");
    start();
  } catch (err) {
    setKey(null);
    signIn();
  }
})();
