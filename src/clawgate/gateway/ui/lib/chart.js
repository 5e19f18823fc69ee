// A small SVG line chart: one or more series over time, an axis label per side, no library.

const NS = "http://www.w3.org/2000/svg";
const W = 600, H = 160, PAD = { l: 44, r: 10, t: 10, b: 22 };

function el(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * chart(points, lines, {label, unit, format}) -> an <svg>.
 * points: [{ts, ...}]; lines: [{key, name, cls}] read point[key] (null = a gap).
 */
export function chart(points, lines, { label = "", format = (v) => String(v) } = {}) {
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": label });
  const values = points.flatMap((p) => lines.map((l) => p[l.key])).filter((v) => v !== null && v !== undefined);
  const max = niceMax(values.length ? Math.max(...values) : 1);
  const t0 = points.length ? points[0].ts : Date.now() - 3600e3;
  const t1 = points.length ? points[points.length - 1].ts : Date.now();
  const span = Math.max(t1 - t0, 1);
  const x = (ts) => PAD.l + ((ts - t0) / span) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - (v / max) * (H - PAD.t - PAD.b);
  for (const frac of [0, 0.5, 1]) {
    const v = max * frac;
    svg.append(el("line", { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(el("text", { x: PAD.l - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, format(v)));
  }
  svg.append(el("text", { x: PAD.l, y: H - 5, class: "axis" }, points.length ? time(t0) : ""));
  svg.append(el("text", { x: W - PAD.r, y: H - 5, class: "axis", "text-anchor": "end" }, points.length ? time(t1) : "no samples yet"));
  for (const line of lines) {
    let d = "";
    let pen = false;
    for (const p of points) {
      const v = p[line.key];
      if (v === null || v === undefined) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${x(p.ts).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    }
    if (points.length === 1 && d) d += `h2`;
    svg.append(el("path", { d: d || "M0,0", class: `line ${line.cls || ""}` }));
  }
  return svg;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function time(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
