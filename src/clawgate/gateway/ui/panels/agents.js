// Agents: every configured agent with its model, workspace and identity; Chat opens it.

import { h, fill, errorLine, badge } from "../lib/dom.js";

export function create({ gw, navigate }) {
  const list = h("div.cards#agents-list");
  const models = h("tbody#models-rows");
  const problem = h("div");
  const el = h("section.panel#panel-agents", { "aria-label": "Agents" }, h("h2", "Agents"), problem, list,
    h("h3", "Models"), h("div.tablewrap", h("table.table", h("thead", h("tr", ["Model", "Name", "Available"].map((t) => h("th", t)))), models)));

  async function load() {
    try {
      const [res, cat] = await Promise.all([gw.request("agents.list"), gw.request("models.list")]);
      fill(list, res.agents.map((a) => h("div.card.agent",
        h("div.cardlabel", a.identity && a.identity.emoji ? a.identity.emoji + " " : "", a.name || a.id, a.id === res.defaultId ? badge("default", "ok") : null),
        h("dl.facts", h("dt", "id"), h("dd.mono", a.id), h("dt", "model"), h("dd.mono", a.model && a.model.primary ? a.model.primary : String(a.model || "—")),
          a.model && a.model.fallbacks && a.model.fallbacks.length ? [h("dt", "fallbacks"), h("dd.mono", a.model.fallbacks.join(", "))] : null,
          h("dt", "workspace"), h("dd.mono.small", a.workspace || "—"), h("dt", "main session"), h("dd.mono", `agent:${a.id}:${res.mainKey}`)),
        h("button.small.primary", { type: "button", on: { click: () => navigate("chat", `agent:${a.id}:${res.mainKey}`) } }, "Chat"))));
      fill(models, (cat.models || []).map((m) => h("tr", h("td.mono", `${m.provider}/${m.id}`), h("td", m.name || ""),
        h("td", m.available === false ? badge(m.unavailableReason || "unavailable", "bad") : badge("yes", "ok")))));
      problem.replaceChildren();
    } catch (err) { problem.replaceChildren(errorLine(err)); }
  }

  return { el, show: load };
}
