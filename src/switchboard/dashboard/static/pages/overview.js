// Overview: fleet-wide usage (the shared store) as stacked time series, latency per model, top keys, budget burn.
import { get } from "../api.js";
import { h, table, fmt } from "../dom.js";
import { stackedBars } from "../chart.js";

const RANGES = { hour: [3600, "1m", 60], day: [86400, "1h", 3600], week: [7 * 86400, "6h", 21600], month: [30 * 86400, "1d", 86400] };
const METRICS = [["requests", "Requests", fmt.compact], ["errors", "Errors", fmt.compact],
                 ["tokens", "Tokens", fmt.compact], ["cost_usd", "Spend", v => fmt.usd(v)]];
const state = { range: "day", group: "model" };

function segmented(id, options, current, onPick) {
  return h("div", { class: "seg", id }, options.map(([value, label]) =>
    h("button", { class: value === current ? "on" : "", "data-value": value, onclick: () => onPick(value) }, label)));
}

export async function overview(main) {
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const plots = h("div", { class: "grid", id: "plots" });
  const tables = h("div", { class: "grid" });
  let destroyers = [];
  const toolbar = h("div", { class: "toolbar" });
  main.append(h("h1", {}, "Overview"),
    h("div", { class: "scope" }, `Whole fleet (shared store) · times in ${tz}`), toolbar, plots, tables);

  async function render() {
    toolbar.replaceChildren(
      segmented("range", Object.keys(RANGES).map(r => [r, "Last " + r]), state.range, v => { state.range = v; render(); }),
      segmented("group", [["model", "By model"], ["provider", "By provider"], ["key", "By key"]], state.group,
        v => { state.group = v; render(); }));
    const [window, bucket, seconds] = RANGES[state.range];
    const until = Date.now() / 1000, since = until - window;
    const q = `since=${since}&until=${until}`;
    const [series, latency, top, keys] = await Promise.all([
      get(`/admin/usage/series?bucket=${bucket}&group_by=${state.group}&tz=${encodeURIComponent(tz)}&${q}`),
      get(`/admin/usage/latency?${q}`), get(`/admin/usage/top_keys?${q}&limit=10`), get("/admin/usage/keys")]);
    destroyers.forEach(d => d()); destroyers = [];
    plots.replaceChildren();
    for (const [field, title, format] of METRICS) {
      const total = series.series.reduce((sum, s) => sum + s[field].reduce((a, b) => a + b, 0), 0);
      const target = h("div", { class: "plot", "data-metric": field });
      plots.append(h("div", { class: "card" }, h("div", { class: "plot-title" }, h("h2", {}, title), h("span", { class: "total" }, format(total))), target));
      destroyers.push(stackedBars(target, { x: series.buckets, bucketSeconds: seconds, format, whole: field !== "cost_usd",
        groups: series.series.map(s => ({ label: s.label, values: s[field] })) }));
    }
    tables.replaceChildren(
      h("div", { class: "card" }, h("h2", {}, "Latency per model"), table([
        { title: "Model", cell: r => r.model }, { title: "Requests", num: true, cell: r => fmt.int(r.requests) },
        { title: "p50", num: true, cell: r => fmt.ms(r.latency_p50_ms) }, { title: "p95", num: true, cell: r => fmt.ms(r.latency_p95_ms) },
        { title: "TTFT p50", num: true, cell: r => fmt.ms(r.ttft_p50_ms) }, { title: "TTFT p95", num: true, cell: r => fmt.ms(r.ttft_p95_ms) },
      ], latency.data)),
      h("div", { class: "card" }, h("h2", {}, "Top keys by spend"), table([
        { title: "Key", cell: r => r.name }, { title: "Spend", num: true, cell: r => fmt.usd(r.cost_usd) },
        { title: "Requests", num: true, cell: r => fmt.int(r.requests) }, { title: "Tokens", num: true, cell: r => fmt.compact(r.tokens) },
      ], top.data)),
      h("div", { class: "card" }, h("h2", {}, "Budget burn"), table([
        { title: "Key", cell: r => r.name }, { title: "Period", cell: r => r.budget_period },
        { title: "Spent", num: true, cell: r => fmt.usd(r.spend_usd) }, { title: "Budget", num: true, cell: r => fmt.usd(r.budget_usd) },
        { title: "", cell: r => h("div", { class: "bar" }, h("span", { class: r.burn >= 1 ? "over" : "", "data-width": Math.min(100, Math.round(r.burn * 100)) })) },
        { title: "Burn", num: true, cell: r => Math.round(r.burn * 100) + " %" },
      ], keys.data.filter(k => k.budget_usd !== null && !k.revoked))));
    // Widths set through the CSSOM (allowed by the CSP, unlike inline style attributes).
    tables.querySelectorAll(".bar > span").forEach(s => { s.style.width = s.dataset.width + "%"; });
  }
  await render();
  return () => destroyers.forEach(d => d());
}
