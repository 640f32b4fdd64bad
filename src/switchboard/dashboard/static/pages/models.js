// Models and providers: routes with fallbacks, and per deployment its breaker, load and recent errors (this instance).
import { get } from "../api.js";
import { h, table, fmt, pill } from "../dom.js";

const STATE = { closed: "good", open: "bad", half_open: "warn" };

export async function modelsPage(main) {
  const health = await get("/admin/health");
  main.append(h("h1", {}, "Models and providers"),
    h("div", { class: "scope", id: "instance-scope" }, `This instance only (${health.instance}): breakers, queues and errors live in each process`),
    h("div", { class: "card" }, h("h2", {}, "Models"), table([
      { title: "Model", cell: m => h("strong", {}, m.name) }, { title: "Route", cell: m => h("code", {}, m.route) },
      { title: "Fallbacks", cell: m => m.fallbacks.length ? m.fallbacks.join(" → ") : "–" },
      { title: "Limits", cell: m => [m.rpm && `${m.rpm} rpm`, m.tpm && `${m.tpm} tpm`].filter(Boolean).join(" · ") || "–" },
      { title: "In flight", num: true, cell: m => m.in_flight ?? "–" }, { title: "Queued", num: true, cell: m => m.queue_depth ?? "–" },
    ], health.models)));
  for (const p of health.providers) {
    main.append(h("div", { class: "card provider", "data-provider": p.name },
      h("h2", {}, `${p.name} `, h("span", { class: "muted" }, `${p.type} · ${p.base_url}`)),
      h("p", {}, `In flight ${p.in_flight} / ${p.max_in_flight} · queued ${p.queue_depth} / ${p.queue} · last 5 min: `,
        `${fmt.int(p.requests_5m)} requests, ${fmt.int(p.errors_5m)} failed`,
        p.error_rate_5m === null ? "" : ` (${(p.error_rate_5m * 100).toFixed(1)} %)`),
      table([
        { title: "Deployment", cell: d => h("code", {}, d.id) }, { title: "Breaker", cell: d => pill(d.state.replace("_", "-"), STATE[d.state]) },
        { title: "Failures in a row", num: true, cell: d => d.failures },
        { title: "Cooldown", num: true, cell: d => d.cooldown_s === null ? "off" : `${d.cooldown_s} s` },
        { title: "Cooldown left", num: true, cell: d => d.cooldown_remaining_s ? `${d.cooldown_remaining_s.toFixed(1)} s` : "–" },
        { title: "Recent upstream errors", cell: d => d.recent_errors.length ? h("div", {}, d.recent_errors.slice(0, 5).map(e =>
          h("div", {}, h("span", { class: "muted" }, new Date(e.ts * 1000).toLocaleTimeString() + " "), `${e.status} ${e.code || ""}: ${e.message}`))) : "none" },
      ], p.deployments)));
  }
}
