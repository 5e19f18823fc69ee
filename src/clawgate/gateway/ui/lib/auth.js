// The gateway token: taken from the URL fragment (#token=...), never the query string, kept in
// localStorage and removed from the address bar at once.

const KEY = "clawgate.token";

export function takeToken(loc = window.location) {
  const fragment = new URLSearchParams(loc.hash.replace(/^#/, ""));
  const token = fragment.get("token");
  if (token) {
    save(token);
    fragment.delete("token");
    const rest = fragment.toString();
    history.replaceState(null, "", loc.pathname + loc.search + (rest ? "#" + rest : ""));
  }
  return stored();
}

export function stored() {
  try { return localStorage.getItem(KEY) || ""; } catch { return ""; }
}

export function save(token) {
  try { localStorage.setItem(KEY, token); } catch { /* private mode: this page only */ }
}

export function forget() {
  try { localStorage.removeItem(KEY); } catch { /* nothing stored */ }
}
