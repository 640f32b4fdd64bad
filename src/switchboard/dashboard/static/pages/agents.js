// Agents and MCP servers (this instance: MCP connections live in each process).
import { get } from "../api.js";
import { h, table, pill } from "../dom.js";

export async function agentsPage(main) {
  const data = await get("/admin/agents");
  main.append(h("h1", {}, "Agents and MCP"),
    h("div", { class: "scope" }, `This instance only (${data.instance})`),
    h("div", { class: "card" }, h("h2", {}, "Agents"), table([
      { title: "Agent", cell: a => h("strong", {}, a.name) }, { title: "Model", cell: a => h("code", {}, a.model) },
      { title: "Tools", cell: a => a.resolved_tools.length ? a.resolved_tools.join(", ") : a.tools.join(", ") || "–" },
      { title: "Max turns", num: true, cell: a => a.max_turns },
      { title: "Concurrency", num: true, cell: a => `${a.in_flight} / ${a.max_in_flight ?? "–"}` },
      { title: "Queued", num: true, cell: a => a.queue_depth },
      { title: "Description", cell: a => a.description || "" },
    ], data.agents)),
    h("div", { class: "card" }, h("h2", {}, "MCP servers"), table([
      { title: "Server", cell: s => h("strong", {}, s.name) }, { title: "Transport", cell: s => s.transport },
      { title: "State", cell: s => pill(s.state, s.state === "connected" ? "good" : "warn") },
      { title: "Restarts", num: true, cell: s => s.restarts }, { title: "Tools", cell: s => s.tools.join(", ") || "–" },
      { title: "Last error", cell: s => s.last_error || "–" },
    ], data.mcp_servers)));
}
