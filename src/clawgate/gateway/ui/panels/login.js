// The login form: shown without a stored token, or after the gateway refused one.

import { h } from "../lib/dom.js";

export function loginForm(message, submit) {
  const input = h("input#token", { type: "password", name: "token", autocomplete: "current-password",
    required: true, placeholder: "gateway token", "aria-label": "Gateway token" });
  const form = h("form.login", {
    on: { submit: (ev) => { ev.preventDefault(); if (input.value.trim()) submit(input.value.trim()); } },
  },
  h("h1", h("img.logo", { src: "ui/icon.svg", alt: "" }), " clawgate"),
  h("p.muted", "Enter the gateway token. ", h("code", "clawgate dashboard"),
    " prints a link that logs you in; the token is also in ", h("code", "<state>/gateway.token"), "."),
  message ? h("p.error#login-error", { role: "alert" }, message) : null,
  h("label", { for: "token" }, "Token"), input,
  h("button.primary", { type: "submit" }, "Connect"));
  setTimeout(() => input.focus(), 0);
  return h("div.loginwrap", form);
}
