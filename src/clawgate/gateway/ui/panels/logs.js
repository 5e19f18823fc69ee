// Logs: a live tail of the gateway's log, a level filter and a search; at most 2,000 lines are
// kept. While the panel is visible it follows logs.subscribe: the gateway pushes logs.appended
// events (each a logs.tail answer continuing the last one), so nothing polls. A gateway without
// logs.subscribe (or one whose followers are all taken) is tailed with logs.tail once a second.

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
  let pushed = false; // following logs.subscribe (the gateway pushes; no timer)
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

  // One logs.tail-shaped answer (polled, pushed, or the subscription's first tail).
  function take(res) {
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
    el.dataset.cursor = String(cursor);
  }

  async function poll() {
    try {
      take(await gw.request("logs.tail", cursor === null ? { limit: 500 } : { cursor, limit: 500 }));
      problem.replaceChildren();
    } catch (err) { problem.replaceChildren(errorLine(err)); }
    clearTimeout(timer);
    if (visible && !pushed) timer = setTimeout(poll, 1000);
  }

  async function start() {
    // (Before hello-ok the method list is unknown: the request waits, and a refusal polls.)
    if (gw.hello && !gw.has("logs.subscribe")) { el.dataset.mode = "poll"; poll(); return; }
    try {
      const res = await gw.request("logs.subscribe", { limit: 500 });
      if (!visible) { gw.request("logs.unsubscribe").catch(() => {}); return; }
      pushed = true;
      el.dataset.mode = "push";
      take({ ...res, reset: true }); // the newest lines: what was shown before may have gaps
      problem.replaceChildren();
    } catch {
      el.dataset.mode = "poll"; // e.g. every follower slot is taken: tail instead
      poll();
    }
  }

  gw.on("logs.appended", (res) => { if (visible && pushed) take(res); });
  level.addEventListener("change", redraw);
  search.addEventListener("input", redraw);
  return {
    el,
    show() { visible = true; start(); },
    hide() {
      visible = false;
      clearTimeout(timer);
      if (pushed) { pushed = false; gw.request("logs.unsubscribe").catch(() => {}); }
    },
    connected() { if (visible) { pushed = false; start(); } }, // a new connection follows nothing
  };
}
