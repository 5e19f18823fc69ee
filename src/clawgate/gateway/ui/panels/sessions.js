// The Sessions panel: a live list (sessions.subscribe, never polling) with search, agent and
// channel filters (both in sessions.list, on the server), keyset paging (50 rows a page by
// nextCursor, so page 2,000 of 100,000 sessions costs what page 1 does), the live run status,
// and per-row rename, model override, reset and delete.

import { h, fill, confirmButton, errorLine, badge } from "../lib/dom.js";
import { ago, num } from "../lib/format.js";

const PAGE = 50;

export function create({ gw, navigate }) {
  const search = h("input#sessions-search", { type: "search", placeholder: "Search key, label, subject…", "aria-label": "Search sessions" });
  const agent = h("select#sessions-agent", { "aria-label": "Filter by agent" }, h("option", { value: "" }, "All agents"));
  const channel = h("select#sessions-channel", { "aria-label": "Filter by channel" }, h("option", { value: "" }, "All channels"));
  const summary = h("span.muted#sessions-summary");
  const prev = h("button.small#sessions-prev", { type: "button" }, "‹ Previous");
  const next = h("button.small#sessions-next", { type: "button" }, "Next ›");
  const body = h("tbody#sessions-rows");
  const problem = h("div");
  const el = h("section.panel#panel-sessions", { "aria-label": "Sessions" },
    h("h2", "Sessions"),
    h("div.toolbar", search, agent, channel, summary),
    problem,
    h("div.tablewrap", h("table.table.sessions",
      h("thead", h("tr", ["Session", "Agent", "Channel", "Status", "Updated", "Tokens", "Model", ""].map((t) => h("th", t)))),
      body)),
    h("div.pager", prev, next));

  // cursors[i] is the nextCursor that leads to page i (null: the first page); the last one is
  // the page shown. Previous pops it, Next pushes the page's nextCursor.
  const state = { cursors: [null], next: null, rows: new Map(), total: 0, capped: false, hasMore: false, models: [], epoch: 0, dirty: new Set(), flush: null, channels: new Set() };
  const page = () => state.cursors.length - 1;

  function query() {
    const q = { limit: PAGE };
    const cursor = state.cursors[page()];
    if (cursor) q.cursor = cursor;
    if (search.value.trim()) q.search = search.value.trim();
    if (agent.value) q.agentId = agent.value;
    if (channel.value) q.channel = channel.value;
    return q;
  }

  function restart() {
    state.cursors = [null];
    load();
  }

  function matches(row) {
    if (agent.value && !row.key.startsWith(`agent:${agent.value}:`)) return false;
    return !channel.value || (row.channel || row.lastChannel || "") === channel.value;
  }

  async function load() {
    const epoch = ++state.epoch;
    try {
      const res = await gw.request("sessions.list", query());
      if (epoch !== state.epoch) return;
      problem.replaceChildren();
      state.total = res.totalCount ?? res.count;
      state.capped = !!res.totalCountCapped;
      state.hasMore = !!res.hasMore;
      state.next = res.nextCursor || null;
      state.rows.clear();
      body.replaceChildren();
      for (const row of res.sessions) addRow(row, false);
      emptyState();
      renderSummary();
    } catch (err) {
      problem.replaceChildren(errorLine(err));
    }
  }

  function renderSummary() {
    const offset = page() * PAGE;
    const first = state.rows.size ? offset + 1 : 0;
    const last = offset + state.rows.size;
    const total = state.capped ? `more than ${num(state.total)}` : num(Math.max(state.total, last));
    summary.textContent = state.rows.size || page() ? `${num(first)}–${num(last)} of ${total}` : "0 of 0";
    prev.disabled = page() === 0;
    next.disabled = !state.hasMore || !state.next;
  }

  function noteChannel(name) {
    if (!name || state.channels.has(name)) return;
    state.channels.add(name);
    channel.append(h("option", { value: name }, name));
  }

  function statusCell(row) {
    if (row.hasActiveRun || row.status === "running") return badge("● running", "run");
    if (row.lastStatus === "failed" || row.lastStatus === "timeout") return badge(row.lastStatus, "bad");
    if (row.abortedLastRun || row.lastStatus === "killed") return badge("stopped", "warn");
    return badge(row.lastStatus || "idle", "ok");
  }

  function rowEl(row) {
    const label = row.label ? h("span.label", row.label) : null;
    const labelInput = h("input.rename", { type: "text", value: row.label || "", placeholder: "label", "aria-label": `Label of ${row.key}` });
    const rename = h("form.inline.renameform", {
      hidden: true,
      on: {
        submit: async (ev) => {
          ev.preventDefault();
          try {
            await gw.request("sessions.patch", { key: row.key, label: labelInput.value.trim() || null });
            rename.hidden = true;
          } catch (err) { rename.append(errorLine(err)); }
        },
      },
    }, labelInput, h("button.small", { type: "submit" }, "Save"));
    const model = h("select.small.modelpick", { "aria-label": `Model of ${row.key}` },
      h("option", { value: "" }, "agent default"),
      state.models.map((m) => h("option", { value: `${m.provider}/${m.id}` }, `${m.provider}/${m.id}`)));
    model.value = row.modelOverride ? `${row.providerOverride ? row.providerOverride + "/" : ""}${row.modelOverride}` : "";
    model.addEventListener("change", async () => {
      try { await gw.request("sessions.patch", { key: row.key, model: model.value || null }); } catch (err) { problem.replaceChildren(errorLine(err)); }
    });
    const actions = h("td.actions",
      h("button.small.open", { type: "button", on: { click: () => navigate("chat", row.key) } }, "Open"),
      h("button.small.renamebtn", { type: "button", on: { click: () => { rename.hidden = !rename.hidden; if (!rename.hidden) labelInput.focus(); } } }, "Rename"),
      model,
      confirmButton("Reset", "Confirm reset", async () => {
        try { await gw.request("sessions.reset", { key: row.key }); } catch (err) { problem.replaceChildren(errorLine(err)); }
      }, "warn"),
      confirmButton("Delete", "Confirm delete", async () => {
        try {
          await gw.request("sessions.delete", { key: row.key });
          dropRow(row.key);
        } catch (err) { problem.replaceChildren(errorLine(err)); }
      }));
    const tr = h("tr", { dataset: { key: row.key } },
      h("td.key", h("a.mono", { href: `#/chat/${encodeURIComponent(row.key)}` }, row.key), label, rename),
      h("td", row.key.startsWith("agent:") ? row.key.split(":")[1] : "—"),
      h("td", row.channel || row.lastChannel || "—"),
      h("td.status", statusCell(row)),
      h("td", { title: row.updatedAt ? new Date(row.updatedAt).toLocaleString() : "" }, ago(row.updatedAt)),
      h("td.num", num(row.totalTokens || 0)),
      h("td.mono.small", row.model ? `${row.modelProvider ? row.modelProvider + "/" : ""}${row.model}` : "—"),
      actions);
    return tr;
  }

  // An empty list says so (a table body with no rows is invisible).
  function emptyState() {
    const shown = body.querySelector("tr.empty");
    if (state.rows.size && shown) shown.remove();
    else if (!state.rows.size && !shown) body.append(h("tr.empty", h("td.muted", { colspan: 8 }, search.value.trim() || agent.value || channel.value ? "No sessions match." : "No sessions yet.")));
  }

  function addRow(row, top) {
    noteChannel(row.channel || row.lastChannel);
    const tr = rowEl(row);
    const old = state.rows.get(row.key);
    state.rows.set(row.key, { row, tr });
    if (old) old.tr.replaceWith(tr);
    else if (top) body.prepend(tr);
    else body.append(tr);
    emptyState();
  }

  function dropRow(key) {
    const entry = state.rows.get(key);
    if (!entry) return;
    entry.tr.remove();
    state.rows.delete(key);
    emptyState();
    state.total = Math.max(0, state.total - 1);
    renderSummary();
  }

  // A sessions.changed event: the run status updates the row at once; other changes fetch
  // the row again (coalesced per key, so a burst of events costs one describe per row).
  function changed(p) {
    const key = p.sessionKey;
    if (!key) return;
    const entry = state.rows.get(key);
    if (p.reason === "delete") { dropRow(key); return; }
    if (p.phase && entry) {
      const row = { ...entry.row, hasActiveRun: !!p.hasActiveRun, status: p.status };
      if (!p.hasActiveRun) { delete row.status; row.lastStatus = p.status; }
      if (p.phase === "model") { row.model = p.model; row.modelProvider = p.modelProvider; }
      addRow(row, false);
      if (p.phase === "start" || p.phase === "model") return;
    }
    if (!entry && (page() > 0 || search.value.trim())) return; // not on this page
    if (!entry && agent.value && p.agentId && p.agentId !== agent.value) return;
    state.dirty.add(key);
    if (!state.flush) state.flush = Promise.resolve().then(flush);
  }

  async function flush() {
    const keys = [...state.dirty];
    state.dirty.clear();
    state.flush = null;
    await Promise.all(keys.map(async (key) => {
      try {
        const res = await gw.request("sessions.describe", { key });
        if (!res.session) { dropRow(key); return; }
        const known = state.rows.has(key);
        const row = { ...(known ? state.rows.get(key).row : {}), ...res.session };
        if (!known && !matches(row)) return; // a new session the filters leave out
        if (!row.hasActiveRun) delete row.status;
        addRow(row, !known);
        if (!known) { state.total += 1; }
        renderSummary();
        el.dataset.updated = String(Date.now());
      } catch { /* the next event or a reload shows it */ }
    }));
  }

  let searchTimer = null;
  search.addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(restart, 200); });
  agent.addEventListener("change", restart);
  channel.addEventListener("change", restart);
  prev.addEventListener("click", () => { if (page() > 0) { state.cursors.pop(); load(); } });
  next.addEventListener("click", () => { if (state.next) { state.cursors.push(state.next); load(); } });
  gw.on("sessions.changed", changed);

  async function subscribe() {
    await gw.request("sessions.subscribe");
  }

  return {
    el,
    async show() {
      try {
        if (agent.options.length === 1) {
          const res = await gw.request("agents.list");
          for (const a of res.agents) agent.append(h("option", { value: a.id }, a.id));
        }
        if (!state.models.length) state.models = (await gw.request("models.list")).models || [];
        if (!state.channels.size) {
          const res = await gw.request("channels.status", { probe: false });
          for (const id of res.channelOrder || Object.keys(res.channelAccounts || {})) noteChannel(id);
        }
        await subscribe();
      } catch (err) { problem.replaceChildren(errorLine(err)); }
      await load();
    },
    connected() { subscribe().then(load).catch(() => {}); },
  };
}
