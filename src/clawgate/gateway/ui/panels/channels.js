// Channels: every account's status (channels.status with probe) and the pending DM pairing
// requests, each with Approve and Deny. The gateway pushes channels.pairing when a request is
// created, approved or denied (here or by another client), so the list is live: each event
// reloads it (coalesced while a reload runs).

import { h, fill, errorLine, badge } from "../lib/dom.js";
import { ago, until } from "../lib/format.js";

export function create({ gw }) {
  const accounts = h("div#channels-accounts");
  const pairing = h("tbody#pairing-rows");
  const problem = h("div");
  const refresh = h("button.small#channels-refresh", { type: "button", on: { click: () => load(true) } }, "Refresh (probe)");
  const el = h("section.panel#panel-channels", { "aria-label": "Channels" },
    h("div.titlebar", h("h2", "Channels"), refresh), problem, accounts,
    h("h3", "Pairing requests"),
    h("p.muted.small", "Unknown senders on a channel with dm_policy = \"pairing\" wait here until you approve them."),
    h("div.tablewrap", h("table.table.pairing", h("thead", h("tr", ["Channel", "Account", "Sender", "Code", "Asked", "Expires", ""].map((t) => h("th", t)))), pairing)));

  async function loadPairing() {
    const res = await gw.request("channels.pairing.list");
    if (!res.requests.length) { fill(pairing, h("tr", h("td.muted", { colspan: 7 }, "No pending requests."))); return; }
    fill(pairing, res.requests.map((r) => {
      const decide = (approve) => async () => {
        try {
          await gw.request(approve ? "channels.pairing.approve" : "channels.pairing.deny", { channel: r.channel, code: r.code });
          await loadPairing();
        } catch (err) { problem.replaceChildren(errorLine(err)); }
      };
      return h("tr", { dataset: { code: r.code } }, h("td", r.channel), h("td", r.accountId || "default"),
        h("td", r.name ? `${r.name} (${r.id})` : r.id), h("td.mono", r.code), h("td", ago(r.createdAt)), h("td", until(r.expiresAt)),
        h("td.actions", h("button.small.primary.approve", { type: "button", on: { click: decide(true) } }, "Approve"),
          h("button.small.deny", { type: "button", on: { click: decide(false) } }, "Deny")));
    }));
  }

  async function loadStatus(probe) {
    const res = await gw.request("channels.status", { probe, timeoutMs: 5000 });
    const ids = res.channelOrder && res.channelOrder.length ? res.channelOrder : Object.keys(res.channelAccounts || {});
    const label = (id) => (res.channelLabels || {})[id] || id;
    const idle = ids.filter((id) => !((res.channelAccounts || {})[id] || []).length);
    const used = ids.filter((id) => !idle.includes(id));
    const hint = idle.length ? h("p.muted.small", `Available, no account configured: ${idle.map(label).join(", ")}. Add one under [channels] in clawgate.toml.`) : null;
    if (!used.length) { fill(accounts, h("p.muted", "No channel accounts are configured."), hint); return; }
    fill(accounts, hint, used.map((id) => {
      const rows = (res.channelAccounts || {})[id] || [];
      return h("div.card.wide", h("h3", label(id)),
        h("div.tablewrap", h("table.table", h("thead", h("tr", ["Account", "State", "Policy", "Last in", "Last out", "Pending", "Problem"].map((t) => h("th", t)))),
          h("tbody", rows.map((a) => h("tr",
            h("td", a.accountId),
            h("td", a.connected || a.running ? badge(a.connected ? "connected" : "running", "ok") : badge(a.enabled === false ? "disabled" : "stopped", "warn")),
            h("td", a.dmPolicy || "—"), h("td", ago(a.lastInboundAt)), h("td", ago(a.lastOutboundAt)),
            h("td.num", String(a.pendingDeliveries ?? 0)),
            h("td.small", a.lastError || a.lastDeliveryError || (a.probe && a.probe.error) || "")))))));
    }));
  }

  async function load(probe = true) {
    try {
      await Promise.all([loadStatus(probe), loadPairing()]);
      problem.replaceChildren();
    } catch (err) { problem.replaceChildren(errorLine(err)); }
  }

  let reloading = null;
  let again = false;
  async function reloadPairing() {
    if (reloading) { again = true; return; }
    reloading = loadPairing().catch((err) => problem.replaceChildren(errorLine(err)));
    await reloading;
    reloading = null;
    el.dataset.pairingUpdated = String(Date.now());
    if (again) { again = false; reloadPairing(); }
  }
  gw.on("channels.pairing", () => { if (!el.hidden) reloadPairing(); });

  return { el, show() { load(true); }, connected() { if (!el.hidden) load(false); } };
}
