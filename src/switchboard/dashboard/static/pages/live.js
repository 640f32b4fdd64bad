// Live requests: this instance's recent requests streaming in (SSE over fetch), filters, a record on click.
import { events, get } from "../api.js";
import { h, fmt, pill } from "../dom.js";

const MAX_ROWS = 300;

export async function livePage(main) {
  const controller = new AbortController();
  const form = h("form", { class: "inline", id: "live-filters" },
    h("label", {}, "Model", h("input", { name: "model", placeholder: "any" })),
    h("label", {}, "Key id", h("input", { name: "key_id", placeholder: "any" })),
    h("label", {}, "Status", h("select", { name: "status" }, ["", "2xx", "4xx", "5xx", "error"].map(s => h("option", { value: s }, s || "any")))),
    h("button", { type: "submit" }, "Apply"));
  const scope = h("div", { class: "scope", id: "live-scope" }, "This instance only");
  const body = h("tbody", { id: "live-rows" });
  const detail = h("div", { id: "live-detail" });
  main.append(h("h1", {}, "Live requests"), scope, h("div", { class: "toolbar" }, form), detail,
    h("div", { class: "card" }, h("table", {}, h("thead", {}, h("tr", {}, ["Time", "Request", "Endpoint", "Key", "Model", "Provider", "Status", "Tokens", "Latency", "TTFT"].map(t => h("th", {}, t)))), body)));
  let stream = controller;

  function row(r) {
    const ok = r.status < 400;
    return h("tr", { class: "clickable", "data-request-id": r.request_id, onclick: async () => {
      const record = await get(`/admin/requests/${encodeURIComponent(r.request_id)}`);
      detail.replaceChildren(h("div", { class: "card" }, h("h2", {}, `Request ${r.request_id}`), h("pre", { id: "live-record" }, JSON.stringify(record, null, 2)),
        h("button", { onclick: () => detail.replaceChildren() }, "Close")));
    } }, h("td", {}, new Date(r.ts * 1000).toLocaleTimeString()), h("td", {}, h("code", {}, r.request_id)), h("td", {}, r.endpoint),
    h("td", {}, r.key_id || "–"), h("td", {}, r.model || "–"), h("td", {}, r.provider || "–"),
    h("td", {}, pill(String(r.status), ok ? "good" : "bad")), h("td", { class: "num" }, fmt.int((r.prompt_tokens || 0) + (r.completion_tokens || 0))),
    h("td", { class: "num" }, fmt.ms(r.latency_ms)), h("td", { class: "num" }, fmt.ms(r.ttft_ms)));
  }

  function connect() {
    stream.abort();
    stream = new AbortController();
    body.replaceChildren();
    const params = new URLSearchParams([...new FormData(form)].filter(([, v]) => v));
    events(`/admin/requests?${params}`, (event, data) => {
      const obj = JSON.parse(data);
      if (event === "instance") scope.textContent = `This instance only (${obj.instance}, the last ${obj.capacity} requests)`;
      if (event === "request") {
        body.prepend(row(obj));
        while (body.children.length > MAX_ROWS) body.lastChild.remove();
      }
    }, stream.signal).catch(err => { if (err.name !== "AbortError") scope.textContent = "Stream ended: " + err.message; });
  }
  form.addEventListener("submit", event => { event.preventDefault(); connect(); });
  connect();
  return () => stream.abort();
}
