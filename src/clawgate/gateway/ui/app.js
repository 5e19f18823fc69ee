// The Control UI's entry point: token, connection, navigation and the panels.

import { Gateway, gatewayUrl } from "./lib/gateway.js";
import { takeToken, save, forget } from "./lib/auth.js";
import { h, fill } from "./lib/dom.js";

// The page loads ui/bundle.js (every module in one file, built by clawgate.gateway.uibundle);
// the panels' factories run when first shown.
const chatModule = import("./panels/chat.js");
const loginModule = import("./panels/login.js");

const PANELS = [
  ["chat", "Chat"], ["overview", "Overview"], ["sessions", "Sessions"], ["channels", "Channels"],
  ["agents", "Agents"], ["plugins", "Plugins"], ["cron", "Cron"], ["logs", "Logs"], ["config", "Config"],
];
const LOADERS = {
  chat: () => chatModule,
  overview: () => import("./panels/overview.js"),
  sessions: () => import("./panels/sessions.js"),
  channels: () => import("./panels/channels.js"),
  agents: () => import("./panels/agents.js"),
  plugins: () => import("./panels/plugins.js"),
  cron: () => import("./panels/cron.js"),
  logs: () => import("./panels/logs.js"),
  config: () => import("./panels/config.js"),
};

const root = document.getElementById("app");
let gw = null;
const panels = new Map(); // name -> {el, show, hide, connected?}
let current = null;

function route() {
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [name, ...rest] = hash.split("/");
  return { name: LOADERS[name] ? name : "chat", arg: rest.join("/") };
}

export function navigate(name, arg = "") {
  const target = `#/${name}${arg ? "/" + encodeURIComponent(arg) : ""}`;
  if (location.hash !== target) location.hash = target;
  else show();
}

function shell() {
  const nav = h("nav.nav", { "aria-label": "Panels" },
    PANELS.map(([name, label]) => h("a.navlink", { href: `#/${name}`, dataset: { panel: name } }, label)));
  const status = h("div.conn#conn", { role: "status", "aria-live": "polite" }, "connecting…");
  const logout = h("button.ghost.small", { type: "button", on: { click: () => { forget(); location.reload(); } } }, "Log out");
  const side = h("aside.side", h("header.brand", h("img.logo", { src: "ui/icon.svg", alt: "" }), h("span", "clawgate")), nav,
    h("footer.sidefoot", status, logout));
  const main = h("main.main#main");
  fill(root, side, main);
  let connectedBefore = false;
  gw.onState((state, problem) => {
    status.className = `conn ${state}`;
    status.title = state; // the phone layout shows only the dot
    status.textContent = state === "connected" ? `connected · v${gw.hello.server.version}` : state === "connecting" ? "connecting…" : `disconnected${problem ? ": " + problem : ""} — retrying`;
    if (state !== "connected") return;
    // The first hello delivers the requests the panels made while connecting; after a
    // reconnect the panels reload what they may have missed.
    if (connectedBefore) for (const panel of panels.values()) panel.connected && panel.connected();
    connectedBefore = true;
  });
}

async function show() {
  const { name, arg } = route();
  for (const link of root.querySelectorAll(".navlink")) {
    link.classList.toggle("active", link.dataset.panel === name);
    if (link.dataset.panel === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  let panel = panels.get(name);
  if (!panel) {
    const mod = await LOADERS[name]();
    panel = mod.create({ gw, navigate });
    panels.set(name, panel);
    document.getElementById("main").append(panel.el);
  }
  if (current && current !== panel) { current.el.hidden = true; current.hide && current.hide(); }
  current = panel;
  panel.el.hidden = false;
  document.title = `${PANELS.find((p) => p[0] === name)[1]} · clawgate`;
  panel.show(arg);
}

async function login(message = "") {
  const { loginForm } = await loginModule;
  fill(root, loginForm(message, (token) => {
    save(token);
    start(token);
  }));
}

function start(token) {
  if (gw) gw.stop();
  gw = new Gateway(gatewayUrl(), token);
  gw.onState((state, problem) => {
    if (state !== "unauthorized") return;
    forget();
    gw.stop();
    panels.clear();
    current = null;
    login(`The gateway refused this token (${problem}). Check it and try again.`);
  });
  // The socket opens first; the shell and the first panel are drawn while it connects. Their
  // first requests wait in the client and leave the moment hello-ok arrives.
  gw.start();
  shell();
  show();
}

window.addEventListener("hashchange", () => { if (document.getElementById("main") && document.querySelector(".nav")) show(); });
const token = takeToken();
if (token) start(token);
else login();
