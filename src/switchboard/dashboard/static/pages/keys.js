// Keys: the virtual keys (shared store) with limits, budgets, spend this period and last use; admins create, edit, revoke.
import { get, request } from "../api.js";
import { h, table, fmt, pill } from "../dom.js";

function limits(k) {
  return [k.rpm ? `${fmt.int(k.rpm)} rpm` : null, k.tpm ? `${fmt.int(k.tpm)} tpm` : null].filter(Boolean).join(" · ") || "–";
}

function keyForm(id, initial, submitLabel, onSubmit) {
  const field = (name, label, attrs = {}) => h("label", {}, label, h("input", { name, value: initial[name] ?? "", ...attrs }));
  const period = h("select", { name: "budget_period" }, ["monthly", "weekly", "daily", "total"].map(p =>
    h("option", { value: p, selected: p === (initial.budget_period || "monthly") }, p)));
  const role = h("select", { name: "role" }, [["", "none"], ["viewer", "viewer"], ["admin", "admin"]].map(([v, l]) =>
    h("option", { value: v, selected: v === (initial.role || "") }, l)));
  const error = h("div", { class: "error" });
  const form = h("form", { class: "inline", id, onsubmit: async event => {
    event.preventDefault();
    const data = new FormData(form);
    const num = name => data.get(name) === "" ? null : Number(data.get(name));
    const body = { models: String(data.get("models") || "*").split(",").map(s => s.trim()).filter(Boolean),
      rpm: num("rpm"), tpm: num("tpm"), budget_usd: num("budget_usd"), budget_period: data.get("budget_period"),
      role: data.get("role") || null };
    if (initial.name === undefined || data.get("name") !== initial.name) body.name = data.get("name");
    try { await onSubmit(body); } catch (err) { error.textContent = err.message; }
  } },
  field("name", "Name", { required: true, placeholder: "team-a" }), field("models", "Models (globs, comma-separated)", { placeholder: "*" }),
  field("rpm", "RPM", { type: "number", min: 1 }), field("tpm", "TPM", { type: "number", min: 1 }),
  field("budget_usd", "Budget USD", { type: "number", min: 0, step: "any" }), h("label", {}, "Period", period), h("label", {}, "Role", role),
  h("button", { class: "primary", type: "submit" }, submitLabel), error);
  if (initial.models) form.elements.models.value = initial.models.join(",");
  return form;
}

export async function keysPage(main, me) {
  const isAdmin = me.role === "admin";
  const list = h("div", { class: "card", id: "keys" });
  const notice = h("div", { id: "key-notice" });
  main.append(h("h1", {}, "Keys"), h("div", { class: "scope" }, "Whole fleet (shared store) · changes apply on every instance within a second"), notice);
  if (isAdmin) {
    main.append(h("div", { class: "card" }, h("h2", {}, "Create a key"), keyForm("create-key", {}, "Create", async body => {
      const made = await request("POST", "/admin/keys", body);
      const copy = h("button", { id: "copy-secret", onclick: async () => { await navigator.clipboard.writeText(made.key); copy.textContent = "Copied"; } }, "Copy");
      notice.replaceChildren(h("div", { class: "card" }, h("h2", {}, `Key ${made.name} created`),
        h("p", { class: "muted" }, "This secret is shown once: copy it now."),
        h("div", { class: "secret" }, h("code", { id: "new-secret" }, made.key), copy)));
      document.getElementById("create-key").reset();
      await load();
    })));
  }
  main.append(list);

  async function load() {
    const [keys, usage] = await Promise.all([get("/admin/keys"), get("/admin/usage/keys")]);
    const spend = Object.fromEntries(usage.data.map(u => [u.key_id, u]));
    const columns = [
      { title: "Name", cell: k => h("span", { "data-key-id": k.id }, k.name) }, { title: "Id", cell: k => h("code", {}, k.id) },
      { title: "Models", cell: k => k.models.join(", ") }, { title: "Limits", cell: limits },
      { title: "Budget", cell: k => k.budget_usd === null ? "–" : `${fmt.usd(k.budget_usd)} / ${k.budget_period}` },
      { title: "Spend (period)", num: true, cell: k => fmt.usd(spend[k.id]?.spend_usd ?? 0) },
      { title: "Last used", cell: k => fmt.when(spend[k.id]?.last_used_at) },
      { title: "Role", cell: k => k.role ? pill(k.role, k.role === "admin" ? "warn" : "") : "–" },
      { title: "Status", cell: k => k.revoked ? pill("revoked", "bad") : (k.expires_at && k.expires_at < Date.now() / 1000 ? pill("expired", "bad") : pill("active", "good")) },
    ];
    if (isAdmin) columns.push({ title: "", cell: k => k.revoked ? "" : h("span", {},
      h("button", { class: "edit", "data-id": k.id, onclick: () => edit(k) }, "Edit"), " ",
      h("button", { class: "danger revoke", "data-id": k.id, onclick: async () => {
        if (!confirm(`Revoke ${k.name}? Clients using it get 401 from now on.`)) return;
        await request("DELETE", `/admin/keys/${encodeURIComponent(k.id)}`); await load();
      } }, "Revoke")) });
    list.replaceChildren(h("h2", {}, `${keys.data.length} keys`), table(columns, keys.data.slice().reverse()));
  }

  function edit(k) {
    notice.replaceChildren(h("div", { class: "card" }, h("h2", {}, `Edit ${k.name}`), keyForm("edit-key", k, "Save", async body => {
      await request("PATCH", `/admin/keys/${encodeURIComponent(k.id)}`, body);
      notice.replaceChildren(); await load();
    }), h("button", { onclick: () => notice.replaceChildren() }, "Cancel")));
  }
  await load();
}
