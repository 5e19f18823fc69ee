// The Overview: health, uptime, version, connected clients, and charts of the last hour
// (turns per minute, turn latency p50/p99, resident memory) from metrics.series. The series is
// fetched again once per sample interval while the panel is visible, and not at all otherwise.

import { h, fill, errorLine } from "../lib/dom.js";
import { chart } from "../lib/chart.js";
import { bytes, duration, num } from "../lib/format.js";

export function create({ gw }) {
  const cards = h("div.cards#overview-cards");
  const charts = h("div.charts#overview-charts");
  const clients = h("tbody#overview-clients");
  const problem = h("div");
  const el = h("section.panel#panel-overview", { "aria-label": "Overview" },
    h("h2", "Overview"), problem, cards, charts,
    h("h3", "Connected clients"),
    h("div.tablewrap", h("table.table", h("thead", h("tr", ["Client", "Mode", "Address", "Version", "Since"].map((t) => h("th", t)))), clients)));
  let timer = null;
  let visible = false;
  let since = null;
  let samples = [];

  function card(label, value, detail = "") {
    return h("div.card", h("div.cardlabel", label), h("div.cardvalue", value), detail ? h("div.muted.small", detail) : null);
  }

  async function refreshStatus() {
    const [status, health, presence] = await Promise.all([gw.request("status"), gw.request("health"), gw.request("system-presence")]);
    const plugins = status.plugins || {};
    fill(cards,
      card("Health", health.ok ? "OK" : "Degraded", `checked in ${health.durationMs} ms`),
      card("Uptime", duration(status.uptimeMs), `version ${status.version}`),
      card("Clients", num(status.connections), "WebSocket connections"),
      card("Sessions", num(health.sessions ? health.sessions.count : 0), `${(status.agents || []).length} agent(s)`),
      card("Plugins", `${plugins.loaded ?? "?"} / ${plugins.total ?? "?"}`, plugins.errors ? `${plugins.errors} with errors` : "all loaded"));
    fill(clients, (Array.isArray(presence) ? presence : presence.value || []).map((p) =>
      h("tr", h("td", p.text || p.host || p.instanceId || "—"), h("td", p.mode || "—"), h("td.mono", p.ip || "—"),
        h("td", p.version || "—"), h("td", p.ts ? new Date(p.ts).toLocaleTimeString() : "—"))));
  }

  async function refreshSeries() {
    const res = await gw.request("metrics.series", since ? { sinceMs: since } : {});
    samples = samples.concat(res.samples).slice(-res.capacity);
    if (samples.length) since = samples[samples.length - 1].ts;
    const points = res.current ? [...samples, res.current] : samples; // the interval so far
    const mb = points.map((s) => ({ ...s, rssMb: s.rssBytes / 1048576 }));
    fill(charts,
      h("figure.chartbox", h("figcaption", "Turns per minute"), chart(points, [{ key: "turnsPerMin", cls: "a" }], { label: "turns per minute", format: (v) => v.toFixed(v < 10 ? 1 : 0) })),
      h("figure.chartbox", h("figcaption", "Turn latency ", h("span.key.a", "p50"), " ", h("span.key.b", "p99"), " (ms)"),
        chart(points, [{ key: "p50Ms", cls: "a" }, { key: "p99Ms", cls: "b" }], { label: "turn latency", format: (v) => v.toFixed(v < 10 ? 1 : 0) })),
      h("figure.chartbox", h("figcaption", "Resident memory (MB)", points.length ? ` · now ${bytes(points[points.length - 1].rssBytes)}` : ""),
        chart(mb, [{ key: "rssMb", cls: "a" }], { label: "resident memory", format: (v) => v.toFixed(v < 10 ? 1 : 0) })));
    el.dataset.samples = String(samples.length);
    clearTimeout(timer);
    if (visible) timer = setTimeout(() => tick(), Math.max(res.intervalMs, 1000));
  }

  async function tick() {
    try {
      await Promise.all([refreshStatus(), refreshSeries()]);
      problem.replaceChildren();
    } catch (err) {
      problem.replaceChildren(errorLine(err));
    }
  }

  return {
    el,
    show() { visible = true; tick(); },
    hide() { visible = false; clearTimeout(timer); },
  };
}
