// The message box: Enter sends, Shift+Enter is a new line; Stop (or Escape in the box) aborts
// the running reply.

import { h } from "../lib/dom.js";

export function composer({ send, stop }) {
  const input = h("textarea#chat-input", { rows: 2, placeholder: "Message (Enter sends, Shift+Enter for a new line, /help for commands)",
    "aria-label": "Message", autocomplete: "off" });
  const sendButton = h("button.primary#chat-send", { type: "submit" }, "Send");
  const stopButton = h("button.danger#chat-stop", { type: "button", hidden: true, title: "Stop the reply (Escape)",
    "aria-keyshortcuts": "Escape", on: { click: () => stop() } }, "Stop");
  const form = h("form.composer", {
    on: {
      submit: (ev) => {
        ev.preventDefault();
        const text = input.value;
        if (!text.trim()) return;
        input.value = "";
        send(text);
      },
    },
  }, input, h("div.actions", stopButton, sendButton));
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      form.requestSubmit();
    } else if (ev.key === "Escape" && !stopButton.hidden) {
      ev.preventDefault();
      stop();
    }
  });
  return {
    el: form,
    input,
    running(on) { stopButton.hidden = !on; },
    focus() { input.focus(); },
  };
}
