// Stacked bar charts over time buckets, drawn with the vendored uPlot (a global from vendor/uPlot.iife.min.js).
const PALETTE = ["#3b5bdb", "#0ca678", "#f59f00", "#e64980", "#7048e8", "#1098ad", "#f76707", "#74b816",
                 "#d6336c", "#4263eb", "#868e96", "#212529"];

export function colour(i) { return PALETTE[i % PALETTE.length]; }

// x: bucket starts (unix seconds); groups: [{label, values}]; the stack is drawn top first so each band shows.
const WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 1e8, 1e9];

export function stackedBars(target, { x, groups, width, height = 220, format = v => v, bucketSeconds, whole = true }) {
  const n = x.length;
  const cumulative = [];
  let running = new Array(n).fill(0);
  for (const g of groups) {
    running = running.map((v, i) => v + (g.values[i] || 0));
    cumulative.push(running);
  }
  const order = groups.map((_, i) => i).reverse();
  const series = [{ value: (u, ts) => ts === null ? "–" : new Date(ts * 1000).toLocaleString() }];
  const data = [x];
  for (const i of order) {
    const g = groups[i];
    series.push({
      label: g.label, stroke: colour(i), fill: colour(i), width: 0,
      paths: uPlot.paths.bars({ size: [0.85, 60], align: 1 }),
      value: (u, v, si, idx) => idx === null ? "–" : format(g.values[idx] || 0),
      points: { show: false },
    });
    data.push(cumulative[i]);
  }
  const opts = {
    width: width || Math.max(320, target.clientWidth - 8), height, series, legend: { live: true },
    scales: { x: { time: true, range: (u, min, max) => [min, max + (bucketSeconds || 0)] }, y: { range: (u, min, max) => [0, Math.max(1, max) * 1.08] } },
    axes: [{ stroke: "#667085", grid: { stroke: "#eef0f3" } },
           { stroke: "#667085", grid: { stroke: "#eef0f3" }, values: (u, ticks) => ticks.map(format), size: 70,
             incrs: whole ? WHOLE : undefined }],
    cursor: { points: { show: false } },
  };
  const plot = new uPlot(opts, data, target);
  const resize = () => plot.setSize({ width: Math.max(320, target.clientWidth - 8), height });
  window.addEventListener("resize", resize);
  return () => { window.removeEventListener("resize", resize); plot.destroy(); };
}
