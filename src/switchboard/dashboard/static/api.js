// The gateway's APIs, same origin only. The key lives in this tab's sessionStorage and goes in a header (no cookies).
const STORAGE = "switchboard.key";
export const base = location.pathname.replace(/\/ui\/?$/, "");

export function key() { return sessionStorage.getItem(STORAGE); }
export function setKey(value) { value ? sessionStorage.setItem(STORAGE, value) : sessionStorage.removeItem(STORAGE); }

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export async function request(method, path, body, signal) {
  const headers = { authorization: "Bearer " + key() };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  if (response.headers.get("content-type")?.startsWith("text/event-stream")) return response;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401 && path.startsWith("/admin/")) window.dispatchEvent(new Event("switchboard:signed-out"));
    throw new ApiError(response.status, data);
  }
  return data;
}

export const get = (path, signal) => request("GET", path, undefined, signal);

// Server-sent events read from a fetch stream (EventSource cannot send an Authorization header).
export async function events(path, onEvent, signal) {
  const response = await fetch(base + path, { headers: { authorization: "Bearer " + key(), accept: "text/event-stream" }, signal });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message", data = "";
      for (const line of frame.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) onEvent(event, data);
    }
  }
}
