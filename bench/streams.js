// The stream load driver of bench/field.py (issue 14, "streams sustained"): Node's built-in http only.
//
//   node bench/streams.js '{"url": "...", "concurrency": 100, "duration_s": 8, "model": "...",
//                           "key": "...", "deltas": 64, "gap_limit_ms": 200}'
//
// `concurrency` keep-alive connections each run paced streams back to back until `duration_s` has
// passed (a stream in flight then is finished, not cut). Every stream is checked frame by frame: a 200
// with text/event-stream, every content delta "<0>" .. "<deltas-1>" present and in order, the
// `data: [DONE]` at the end. Per stream it records the time to the first content delta and the gaps
// between consecutive content deltas (arrival times of the socket reads that carried them). Prints one
// JSON line: counts, failures by reason, frames/s, the driver's own CPU time, and the raw TTFT and gap
// samples in microseconds (field.py computes the percentiles and merges runs).
"use strict";
const http = require("http");

const cfg = JSON.parse(process.argv[2]);
const url = new URL(cfg.url);
const deltas = cfg.deltas;
const gapLimitUs = (cfg.gap_limit_ms || 200) * 1000;
const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.concurrency, maxFreeSockets: cfg.concurrency });
const body = JSON.stringify({
  model: cfg.model,
  messages: [{ role: "user", content: "Count for me." }],
  stream: true,
  stream_options: { include_usage: true },
});
const headers = { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) };
if (cfg.key) headers.Authorization = "Bearer " + cfg.key;
const DELTA = /"content":\s*"<(\d+)>"/;

const nowUs = () => Number(process.hrtime.bigint() / 1000n);
const started = nowUs();
const stopAt = started + cfg.duration_s * 1e6;
const cpuStart = process.cpuUsage();
const out = {
  streams: 0, ok: 0, failed: 0, failures: {}, frames: 0, slow_gap_streams: 0,
  ttft_us: [], gap_us: [], max_gap_us: 0,
};

function fail(reason) {
  out.failed += 1;
  out.failures[reason] = (out.failures[reason] || 0) + 1;
}

function oneStream(done) {
  const t0 = nowUs();
  let expect = 0, lastAt = 0, ttft = -1, sawDone = false, finished = false, buf = "", maxGap = 0;
  const gaps = [];
  const finish = (reason) => {
    if (finished) return;
    finished = true;
    out.streams += 1;
    if (reason === null && expect !== deltas) reason = "missing frames";
    if (reason === null && !sawDone) reason = "no [DONE]";
    if (reason !== null) fail(reason);
    else {
      out.ok += 1;
      out.ttft_us.push(ttft);
      for (const g of gaps) out.gap_us.push(g);
      if (maxGap > out.max_gap_us) out.max_gap_us = maxGap;
      if (maxGap > gapLimitUs) out.slow_gap_streams += 1;
    }
    done();
  };
  const req = http.request({
    agent, host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers,
  }, (res) => {
    if (res.statusCode !== 200 || !String(res.headers["content-type"] || "").startsWith("text/event-stream")) {
      res.resume();
      res.on("end", () => finish("status " + res.statusCode));
      return;
    }
    res.setEncoding("utf8");
    res.on("data", (text) => {
      const at = nowUs();
      buf += text;
      let cut;
      while ((cut = buf.indexOf("\n\n")) !== -1) {
        const frame = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        if (frame.indexOf("[DONE]") !== -1) { sawDone = true; continue; }
        const m = DELTA.exec(frame);
        if (m === null) continue;
        out.frames += 1;
        if (Number(m[1]) !== expect) { finished || (req.destroy(), finish("out of order")); return; }
        if (expect === 0) ttft = at - t0;
        else { const g = at - lastAt; gaps.push(g); if (g > maxGap) maxGap = g; }
        lastAt = at;
        expect += 1;
      }
    });
    res.on("end", () => finish(null));
    res.on("error", () => finish("response error"));
    res.on("aborted", () => finish("aborted"));
  });
  req.setTimeout(30000, () => { req.destroy(); finish("timeout"); });
  req.on("error", (e) => finish("socket " + (e.code || e.message)));
  req.end(body);
}

let running = cfg.concurrency;
function loop() {
  if (nowUs() >= stopAt) {
    running -= 1;
    if (running === 0) report();
    return;
  }
  oneStream(loop);
}

function report() {
  const elapsed = (nowUs() - started) / 1e6;
  const cpu = process.cpuUsage(cpuStart);
  out.elapsed_s = elapsed;
  out.frames_per_s = out.frames / elapsed;
  out.driver_cpu_share = (cpu.user + cpu.system) / 1e6 / elapsed;
  process.stdout.write(JSON.stringify(out) + "\n");
  agent.destroy();
}

for (let i = 0; i < cfg.concurrency; i++) loop();
