// Config: the effective configuration as the gateway shows it (secrets redacted by config.get).

import { h, fill, errorLine } from "../lib/dom.js";

export function create({ gw }) {
  const meta = h("p.muted#config-meta");
  const pre = h("pre.json#config-json");
  const problem = h("div");
  const el = h("section.panel#panel-config", { "aria-label": "Config" }, h("h2", "Config"), meta, problem, pre);

  async function load() {
    try {
      const res = await gw.request("config.get");
      fill(meta, h("span.mono", res.path), res.exists ? "" : " (no file: defaults)", ` · sha256 ${res.hash.slice(0, 12)}… · secrets are shown as __REDACTED__`);
      pre.textContent = JSON.stringify(res.config, null, 2);
      problem.replaceChildren();
    } catch (err) { problem.replaceChildren(errorLine(err)); }
  }

  return { el, show: load };
}
