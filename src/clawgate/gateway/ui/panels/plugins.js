// Plugins: every plugin with its status and reason, the diagnostics, and Reload.

import { h, fill, errorLine, badge } from "../lib/dom.js";

const KIND = { loaded: "ok", error: "bad", disabled: "", overridden: "warn" };

export function create({ gw }) {
  const rows = h("tbody#plugins-rows");
  const diags = h("ul.diags#plugins-diagnostics");
  const problem = h("div");
  const result = h("span.muted#plugins-result", { role: "status" });
  const reload = h("button.small#plugins-reload", { type: "button" }, "Reload plugins");
  const el = h("section.panel#panel-plugins", { "aria-label": "Plugins" },
    h("div.titlebar", h("h2", "Plugins"), h("span", result, " ", reload)), problem,
    h("div.tablewrap", h("table.table.plugins", h("thead", h("tr", ["Plugin", "Origin", "Status", "Reason", "Provides"].map((t) => h("th", t)))), rows)),
    h("h3", "Diagnostics"), diags);

  function render(res) {
    fill(rows, res.plugins.map((p) => h("tr", { dataset: { plugin: p.id } },
      h("td.mono", p.id, p.version ? h("span.muted.small", ` ${p.version}`) : null),
      h("td", p.origin || "—"),
      h("td", badge(p.status, KIND[p.status] ?? "")),
      h("td.reason", [p.reason, p.failurePhase ? ` (during ${p.failurePhase})` : "", p.error && p.error !== p.reason ? h("div.small.mono", p.error) : null]),
      h("td.small", [...(p.providers || []), ...(p.channels || []), ...(p.tools || [])].join(", ") || "—"))));
    fill(diags, res.diagnostics.length ? res.diagnostics.map((d) =>
      h("li", badge(d.level || d.severity || "info", d.level === "error" ? "bad" : "warn"), " ", h("span.mono", d.pluginId || d.plugin || ""), " ", d.message || JSON.stringify(d)))
      : [h("li.muted", "No diagnostics.")]);
  }

  async function load() {
    try { render(await gw.request("plugins.list")); problem.replaceChildren(); } catch (err) { problem.replaceChildren(errorLine(err)); }
  }

  reload.addEventListener("click", async () => {
    reload.disabled = true;
    result.textContent = "reloading…";
    try {
      const res = await gw.request("plugins.reload");
      result.textContent = res.changed ? `reloaded: generation ${res.generation}` : "nothing changed";
      render(res);
      problem.replaceChildren();
    } catch (err) {
      result.textContent = "";
      problem.replaceChildren(errorLine(err));
    } finally { reload.disabled = false; }
  });

  return { el, show: load };
}
