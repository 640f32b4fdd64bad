// Playground: a streamed chat with any model or agent the signed-in key may use; agents' tool activity shown.
import { base, key, get } from "../api.js";
import { h } from "../dom.js";

export async function playground(main) {
  const models = await get("/v1/models");
  const select = h("select", { id: "pg-model", name: "model" }, models.data.map(m => h("option", { value: m.id }, m.id + (m.owned_by === "switchboard-agent" ? " (agent)" : ""))));
  const prompt = h("textarea", { id: "pg-prompt", placeholder: "Say something…" });
  const chat = h("div", { class: "chat", id: "pg-chat" });
  const status = h("div", { class: "muted", id: "pg-status" });
  const history = [];
  let controller = null;
  const send = h("button", { class: "primary", id: "pg-send", type: "submit" }, "Send");
  const form = h("form", { id: "pg-form", onsubmit: async event => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text) return;
    history.push({ role: "user", content: text });
    chat.append(h("div", { class: "msg user" }, text));
    prompt.value = "";
    const tools = h("div", { class: "tools" });
    const content = h("div", { class: "content" });
    const bubble = h("div", { class: "msg assistant" }, content);
    chat.append(bubble);
    send.disabled = true;
    controller = new AbortController();
    status.textContent = "Streaming…";
    let answer = "";
    try {
      const response = await fetch(base + "/v1/chat/completions", { method: "POST", signal: controller.signal,
        headers: { authorization: "Bearer " + key(), "content-type": "application/json" },
        body: JSON.stringify({ model: select.value, messages: history, stream: true }) });
      if (!response.ok) throw new Error((await response.json()).error?.message || `HTTP ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end).trim();
          buffer = buffer.slice(end + 2);
          if (!frame.startsWith("data: ") || frame === "data: [DONE]") continue;
          const chunk = JSON.parse(frame.slice(6));
          if (chunk.error) throw new Error(chunk.error.message);
          const delta = chunk.choices?.[0]?.delta || {};
          if (delta.reasoning_content) {
            if (!tools.parentNode) bubble.prepend(tools);
            tools.textContent += delta.reasoning_content;
          }
          if (delta.content) { answer += delta.content; content.textContent = answer; }
        }
      }
      history.push({ role: "assistant", content: answer });
      status.textContent = "Done";
    } catch (err) {
      bubble.append(h("div", { class: "error" }, err.message));
      status.textContent = "";
    } finally {
      send.disabled = false;
    }
  } }, prompt, h("div", { class: "toolbar" }, send, status));
  main.append(h("h1", {}, "Playground"), h("div", { class: "scope" }, "Uses the signed-in key: its models, limits and budget apply"),
    h("div", { class: "toolbar" }, h("label", {}, "Model or agent", select)), h("div", { class: "card" }, chat, form));
  return () => controller?.abort();
}
