// Markdown to DOM nodes, safely: every piece of text becomes a text node, links only for
// http(s) and mailto URLs, no raw HTML at all (an "<img onerror=...>" in a reply stays text).

import { h } from "./dom.js";

const SAFE_URL = /^(https?:\/\/|mailto:)/i;

/** A DocumentFragment for the Markdown `text`. */
export function render(text) {
  const out = document.createDocumentFragment();
  const lines = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```|~~~)\s*([\w+-]*)\s*$/);
    if (fence) {
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++;
      const code = h("code", body.join("\n"));
      if (fence[2]) code.dataset.lang = fence[2];
      out.append(h("pre.code", code));
      continue;
    }
    if (!line.trim()) { i++; continue; }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      out.append(inline(h("h" + Math.min(heading[1].length + 2, 6)), heading[2]));
      i++;
      continue;
    }
    if (/^\s*>/.test(line)) {
      const body = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) body.push(lines[i++].replace(/^\s*>\s?/, ""));
      const quote = h("blockquote");
      quote.append(render(body.join("\n")));
      out.append(quote);
      continue;
    }
    const item = /^\s*([-*+]|\d{1,9}[.)])\s+/;
    if (item.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const list = h(ordered ? "ol" : "ul");
      while (i < lines.length && item.test(lines[i])) {
        list.append(inline(h("li"), lines[i].replace(item, "")));
        i++;
      }
      out.append(list);
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) { out.append(h("hr")); i++; continue; }
    const para = [];
    while (i < lines.length && lines[i].trim() && !/^\s*(```|~~~|#{1,6}\s|>)/.test(lines[i]) && !item.test(lines[i])) {
      para.push(lines[i++]);
    }
    const p = h("p");
    para.forEach((text, n) => {
      if (n) p.append(h("br"));
      inline(p, text);
    });
    out.append(p);
  }
  return out;
}

// `code`, **bold**, *em* / _em_, ~~strike~~, [text](url), bare http(s) URLs.
const INLINE = /(`+)([^`]+?)\1|\*\*([^*]+?)\*\*|__([^_]+?)__|(?<![\w*])\*([^*\s][^*]*?)\*(?!\w)|(?<!\w)_([^_\s][^_]*?)_(?!\w)|~~([^~]+?)~~|\[([^\]]+)\]\(([^)\s]+)\)|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/;

/** Append the inline Markdown `text` to `el`; returns `el`. */
export function inline(el, text) {
  let rest = String(text);
  while (rest) {
    const m = rest.match(INLINE);
    if (!m) { el.append(rest); break; }
    if (m.index) el.append(rest.slice(0, m.index));
    if (m[2] !== undefined) el.append(h("code", m[2]));
    else if (m[3] !== undefined || m[4] !== undefined) el.append(inline(h("strong"), m[3] ?? m[4]));
    else if (m[5] !== undefined || m[6] !== undefined) el.append(inline(h("em"), m[5] ?? m[6]));
    else if (m[7] !== undefined) el.append(inline(h("del"), m[7]));
    else if (m[8] !== undefined) el.append(link(m[9], m[8]));
    else el.append(link(m[10], m[10]));
    rest = rest.slice(m.index + m[0].length);
  }
  return el;
}

function link(url, label) {
  if (!SAFE_URL.test(url)) return document.createTextNode(`[${label}](${url})`);
  return h("a", { href: url, target: "_blank", rel: "noopener noreferrer nofollow" }, label);
}
