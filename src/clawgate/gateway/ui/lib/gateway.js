// The WebSocket client of the control plane: the same protocol every clawgate client speaks
// (connect with the token -> hello-ok; req/res frames; events). One connection per page; it
// reconnects with a backoff, except after the gateway refused the token.

const PENDING_MAX = 256; // requests in flight at once (the gateway runs 64 per connection)

export class GatewayError extends Error {
  constructor(error) {
    super(error && error.message ? error.message : "request failed");
    this.code = error && error.code;
    this.details = (error && error.details) || {};
  }
}

export class Gateway {
  constructor(url, token) {
    this.url = url;
    this.token = token;
    this.state = "idle"; // connecting | connected | unauthorized | disconnected
    this.hello = null;
    this.problem = "";
    this._ws = null;
    this._seq = 0;
    this._pending = new Map();
    this._early = []; // requests made before the first hello-ok, sent when it arrives
    this._listeners = new Map();
    this._stateListeners = new Set();
    this._backoff = 500;
    this._timer = null;
    this._closed = false;
  }

  start() {
    this._closed = false;
    this._open();
  }

  stop() {
    this._closed = true;
    this._rejectEarly("page closed");
    clearTimeout(this._timer);
    if (this._ws) this._ws.close(1000, "page closed");
  }

  /** fn(event payload, frame) for every `event`; returns the unsubscribe function. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event).delete(fn);
  }

  /** fn(state) on every state change (and once now). */
  onState(fn) {
    this._stateListeners.add(fn);
    fn(this.state);
    return () => this._stateListeners.delete(fn);
  }

  has(method) {
    return !!(this.hello && this.hello.features.methods.includes(method));
  }

  request(method, params = {}) {
    // Before the first hello-ok, requests wait (the page draws before the socket answers);
    // after it, a request made while disconnected fails and the panel reloads on reconnect.
    const early = !this.hello && !this._closed && this.state !== "unauthorized";
    if (this.state !== "connected" && !early) return Promise.reject(new GatewayError({ code: "UNAVAILABLE", message: "not connected to the gateway" }));
    if (this._pending.size + this._early.length >= PENDING_MAX) return Promise.reject(new GatewayError({ code: "UNAVAILABLE", message: "too many requests in flight" }));
    const id = `ui-${++this._seq}`;
    return new Promise((resolve, reject) => {
      if (this.state !== "connected") { this._early.push({ id, method, params, resolve, reject }); return; }
      this._pending.set(id, { resolve, reject, method });
      this._ws.send(JSON.stringify({ type: "req", id, method, params }));
    });
  }

  _flushEarly() {
    const waiting = this._early;
    this._early = [];
    for (const { id, method, params, resolve, reject } of waiting) {
      this._pending.set(id, { resolve, reject, method });
      this._ws.send(JSON.stringify({ type: "req", id, method, params }));
    }
  }

  _rejectEarly(message) {
    const waiting = this._early;
    this._early = [];
    for (const waiter of waiting) waiter.reject(new GatewayError({ code: "UNAVAILABLE", message }));
  }

  _setState(state, problem = "") {
    this.state = state;
    this.problem = problem;
    for (const fn of this._stateListeners) fn(state, problem);
  }

  _open() {
    const ws = new WebSocket(this.url);
    this._ws = ws;
    this._setState("connecting");
    ws.onmessage = (msg) => this._frame(ws, msg.data);
    ws.onclose = (ev) => this._gone(ws, ev);
  }

  _frame(ws, data) {
    let frame;
    try { frame = JSON.parse(data); } catch { return; }
    if (frame.type === "event" && frame.event === "connect.challenge") {
      ws.send(JSON.stringify({
        type: "req", id: "connect", method: "connect", params: {
          minProtocol: 3, maxProtocol: 4,
          client: { id: "clawgate-control-ui", version: "1", platform: navigator.platform || "web", mode: "ui",
                    displayName: "Control UI" },
          role: "operator", auth: { token: this.token },
        },
      }));
      return;
    }
    if (frame.type === "res" && frame.id === "connect") {
      if (frame.ok) {
        this.hello = frame.payload;
        if (!performance.getEntriesByName("clawgate:hello").length) performance.mark("clawgate:hello"); // bench/ui.py
        this._backoff = 500;
        this._flushEarly(); // first: the page's first requests go out before any new ones
        this._setState("connected");
      } else {
        const code = (frame.error.details || {}).code || "";
        const refused = code.startsWith("AUTH_") || /unauthorized/.test(frame.error.message || "");
        this._refusal = refused ? frame.error.message : "";
        this._setState(refused ? "unauthorized" : "disconnected", frame.error.message);
        if (refused) this._rejectEarly(frame.error.message);
      }
      return;
    }
    if (frame.type === "res") {
      const waiter = this._pending.get(frame.id);
      if (!waiter) return;
      this._pending.delete(frame.id);
      if (frame.ok) waiter.resolve(frame.payload);
      else waiter.reject(new GatewayError(frame.error));
      return;
    }
    if (frame.type === "event") {
      const fns = this._listeners.get(frame.event);
      if (fns) for (const fn of [...fns]) {
        try { fn(frame.payload, frame); } catch (err) { console.error(frame.event, err); }
      }
    }
  }

  _gone(ws, ev) {
    if (ws !== this._ws) return;
    for (const waiter of this._pending.values()) waiter.reject(new GatewayError({ code: "UNAVAILABLE", message: "connection lost" }));
    this._pending.clear();
    if (this.state === "unauthorized" || this._closed) return;
    this._setState("disconnected", ev.reason || "connection closed");
    this._timer = setTimeout(() => this._open(), this._backoff);
    this._backoff = Math.min(this._backoff * 2, 10000);
  }
}

/** The control plane's URL for this page: the page's own host, at "/". */
export function gatewayUrl(loc = window.location) {
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/`;
}
