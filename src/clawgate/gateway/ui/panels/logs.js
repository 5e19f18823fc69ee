// Logs: a live tail of the gateway's log (logs.tail with a cursor, once a second while the
// panel is visible), a level filter and a search; at most 2,000 lines are kept.

import { h, fill, errorLine } from "../lib/dom.js";

const KEEP = 2000;
const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"];
const OPTIONS = ["debug", "info", "warn", "error"];

function normal(name) {
  const level = String(name || "info").toLowerCase();
  return { warning: "warn", critical: "fatal" }[level] || (LEVELS.includes(level) ? level : "info");
}

function parse(line) {
  try {
    const r = JSON.parse(line);
    const meta = r._meta || {};
    let sub = "";
    try { sub = JSON.parse(meta.name || "{}").subsystem || ""; } catch { sub = meta.name || ""; }
    return { time: r.time || meta.date || "", level: normal(meta.logLevelName), sub, msg: r["0"] ?? r.message ?? line };
  } catch {
    return { time: "", level: "info", sub: "", msg: line };
  }
}

export function create({ gw }) {
  const level = h("select#logs-level", { "aria-label": "Lowest level" }, OPTIONS.map((l) => h("option", { value: l }, l)));
  level.value = "debug";
  const search = h("input#logs-search", { type: "search", placeholder: "Filter lines…", "aria-label": "Filter log lines" });
  const follow = h("input#logs-follow", { type: "checkbox", checked: true });
  const out = h("div.logs#logs-lines", { role: "log", tabindex: "0" });
  const problem = h("div");
  const el = h("section.panel#panel-logs", { "aria-label": "Logs" }, h("h2", "Logs"),
    h("div.toolbar", h("label.inline", "Level ", level), search, h("label.inline", follow, " follow")), problem, out);
  let cursor = null;
  let timer = null;
  let visible = false;
  const lines = [];

  function shows(entry) {
    if (LEVELS.indexOf(entry.level) < LEVELS.indexOf(level.value)) return false;
    const q = search.value.trim().toLowerCase();
    return !q || `${entry.sub} ${entry.msg}`.toLowerCase().includes(q);
  }

  function lineEl(entry) {
    return h("div.logline." + entry.level,
      h("span.time", entry.time ? String(entry.time).replace("T", " ").slice(0, 19) : ""), " ",
      h("span.level", entry.level), " ", h("span.sub", entry.sub), " ", h("span.msg", String(entry.msg)));
  }

  function redraw() {
    fill(out, lines.filter(shows).map(lineEl));
    if (follow.checked) out.scrollTop = out.scrollHeight;
  }

  async function poll() {
    try {
      const res = await gw.request("logs.tail", cursor === null ? { limit: 500 } : { cursor, limit: 500 });
      if (res.reset) lines.length = 0;
      cursor = res.cursor;
      const fresh = res.lines.map(parse);
      lines.push(...fresh);
      if (lines.length > KEEP) lines.splice(0, lines.length - KEEP);
      if (res.reset || out.childElementCount > KEEP) redraw();
      else {
        out.append(...fresh.filter(shows).map(lineEl));
        if (follow.checked && fresh.length) out.scrollTop = out.scrollHeight;
      }
      problem.replaceChildren();
    } catch (err) { problem.replaceChildren(errorLine(err)); }
    clearTimeout(timer);
    if (visible) timer = setTimeout(poll, 1000);
  }

  level.addEventListener("change", redraw);
  search.addEventListener("input", redraw);
  return { el, show() { visible = true; poll(); }, hide() { visible = false; clearTimeout(timer); } };
}
