// One transcript message as DOM: user and assistant bubbles, tool calls and results as
// collapsible cards, compaction markers. Model and user text is rendered as text or through
// the safe Markdown renderer, never as HTML.

import { h } from "../lib/dom.js";
import { render } from "../lib/markdown.js";
import { clock } from "../lib/format.js";

export function textOf(message) {
  if (!message) return "";
  if (typeof message === "string") return message;
  const content = message.content;
  if (typeof content === "string") return content;
  return (content || []).filter((p) => p.type === "text").map((p) => p.text).join("");
}

function toolCard(title, body, cls) {
  return h("details.tool." + cls, h("summary", title),
    h("pre.toolbody", body));
}

function pretty(args) {
  try { return JSON.stringify(JSON.parse(args), null, 2); } catch { return String(args ?? ""); }
}

/** The element for a stored (or live) message; dataset.id is its transcript id. */
export function messageEl(message) {
  const id = message.__openclaw && message.__openclaw.id;
  const time = clock(message.timestamp);
  if (message.role === "toolResult") {
    const el = h("div.msg.toolresult", toolCard(`Result of ${message.toolName || "tool"}`, textOf(message), "result"));
    if (id) el.dataset.id = id;
    return el;
  }
  if (message.role === "compactionSummary") {
    const el = h("div.msg.divider", h("details", h("summary", "Earlier messages compacted"), h("p", message.summary || "")));
    if (id) el.dataset.id = id;
    return el;
  }
  const user = message.role === "user";
  const body = h("div.body");
  const text = textOf(message);
  if (user) body.append(h("div.plain", text));
  else if (text) body.append(render(text));
  const calls = (Array.isArray(message.content) ? message.content : []).filter((p) => p.type === "toolCall");
  const cards = calls.map((c) => toolCard(`Tool call: ${c.name}`, pretty(c.arguments), "call"));
  const meta = h("div.meta", user ? "You" : "Assistant", time ? ` · ${time}` : "",
    message.stopReason && !["stop", "tool_calls"].includes(message.stopReason) ? ` · ${message.stopReason === "aborted" ? "stopped" : message.stopReason}` : "");
  const el = h(`div.msg.${user ? "user" : "assistant"}`, text || !cards.length ? h("div.bubble", body) : null, cards, meta);
  if (id) el.dataset.id = id;
  return el;
}

/** A live reply being streamed: update(text) re-renders it, done(note) finishes it. */
export function liveEl(runId) {
  const body = h("div.body");
  const meta = h("div.meta", "Assistant · streaming…");
  const el = h("div.msg.assistant.live", { dataset: { run: runId } }, h("div.bubble", body), meta);
  return {
    el,
    update(text) { body.replaceChildren(render(text)); },
    done(note = "", cls = "") {
      el.classList.remove("live");
      if (cls) el.classList.add(cls);
      meta.textContent = `Assistant${note ? " · " + note : ""}`;
    },
  };
}

/** A message sent from here that the gateway has not started yet. */
export function pendingEl(text, runId) {
  return h("div.msg.user.pending", { dataset: { run: runId } }, h("div.bubble", h("div.body", h("div.plain", text))),
    h("div.meta", "You · queued"));
}
