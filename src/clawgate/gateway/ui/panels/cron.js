// Cron: the jobs with their schedule, next run and last outcome; Run now; each job's history.
// `cron` events refresh the list while the panel is open.

import { h, fill, errorLine, badge } from "../lib/dom.js";
import { ago, until, duration } from "../lib/format.js";

function schedule(s) {
  if (!s) return "—";
  if (s.kind === "cron") return `cron ${s.expr}${s.tz ? " (" + s.tz + ")" : ""}`;
  if (s.kind === "every") return `every ${duration(s.everyMs)}`;
  if (s.kind === "at") return `at ${new Date(s.at).toLocaleString()}`;
  return JSON.stringify(s);
}

export function create({ gw }) {
  const info = h("p.muted#cron-status");
  const rows = h("tbody#cron-rows");
  const runs = h("div#cron-runs");
  const problem = h("div");
  const el = h("section.panel#panel-cron", { "aria-label": "Cron" }, h("h2", "Cron"), info, problem,
    h("div.tablewrap", h("table.table", h("thead", h("tr", ["Job", "Schedule", "Next run", "Last run", "Status", ""].map((t) => h("th", t)))), rows)), runs);
  let visible = false;

  async function history(job) {
    try {
      const res = await gw.request("cron.runs", { id: job.id, limit: 20 });
      fill(runs, h("h3", `History of ${job.name}`), res.entries.length ? h("div.tablewrap", h("table.table", h("thead", h("tr", ["When", "Status", "Took", "Summary"].map((t) => h("th", t)))),
        h("tbody", res.entries.map((e) => h("tr", h("td", ago(e.runAtMs || e.ts)), h("td", badge(e.status, e.status === "ok" ? "ok" : "bad")),
          h("td", duration(e.durationMs)), h("td.small", e.error || e.summary || "")))))) : h("p.muted", "No runs yet."));
    } catch (err) { problem.replaceChildren(errorLine(err)); }
  }

  async function load() {
    try {
      const [status, list] = await Promise.all([gw.request("cron.status"), gw.request("cron.list", { includeDisabled: true })]);
      info.textContent = `${status.enabled ? "Scheduler on" : "Scheduler off"} · ${status.jobs} job(s) · next wake ${until(status.nextWakeAtMs)}`;
      fill(rows, list.jobs.length ? list.jobs.map((job) => h("tr",
        h("td", job.name, job.enabled ? null : badge("disabled", "warn")),
        h("td.mono.small", schedule(job.schedule)),
        h("td", until(job.state.nextRunAtMs)),
        h("td", ago(job.state.lastRunAtMs)),
        h("td", job.state.lastStatus ? badge(job.state.lastStatus, job.state.lastStatus === "ok" ? "ok" : "bad") : "—"),
        h("td.actions",
          h("button.small.primary", { type: "button", on: { click: async (ev) => {
            ev.target.disabled = true;
            try { await gw.request("cron.run", { id: job.id }); await load(); await history(job); } catch (err) { problem.replaceChildren(errorLine(err)); }
            ev.target.disabled = false;
          } } }, "Run now"),
          h("button.small", { type: "button", on: { click: () => history(job) } }, "History"))))
        : [h("tr", h("td.muted", { colspan: 6 }, "No cron jobs. Add one with clawgate cron add."))]);
      problem.replaceChildren();
    } catch (err) { problem.replaceChildren(errorLine(err)); }
  }

  gw.on("cron", () => { if (visible) load(); });
  return { el, show() { visible = true; load(); }, hide() { visible = false; } };
}
