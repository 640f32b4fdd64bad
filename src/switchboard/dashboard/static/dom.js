// Small DOM helpers: elements are built with h(), never from HTML strings (no injection, CSP-friendly).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "value") el.value = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function table(columns, rows, onClick) {
  const head = h("tr", {}, columns.map(c => h("th", { class: c.num ? "num" : "" }, c.title)));
  const body = rows.map(r => h("tr", { class: onClick ? "clickable" : "", onclick: onClick ? () => onClick(r) : null },
    columns.map(c => h("td", { class: c.num ? "num" : "" }, c.cell(r)))));
  if (!rows.length) body.push(h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, "No data yet")));
  return h("table", {}, h("thead", {}, head), h("tbody", {}, body));
}

export const fmt = {
  int: n => (n ?? 0).toLocaleString("en-US"),
  usd: n => n === null || n === undefined ? "–" : "$" + Number(n).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: n < 1 ? 4 : 2 }),
  ms: n => n === null || n === undefined ? "–" : n >= 1000 ? (n / 1000).toFixed(2) + " s" : Math.round(n) + " ms",
  when: ts => ts ? new Date(ts * 1000).toLocaleString() : "–",
  compact: n => Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(n ?? 0),
};

export function pill(text, kind) { return h("span", { class: "pill " + (kind || "") }, text); }
