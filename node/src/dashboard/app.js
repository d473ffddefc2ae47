// Flotilla dashboard: polls /api/dashboard and draws tables. Every value is set with
// textContent, never parsed as HTML.
"use strict";

const KEY = "flotilla-token";
const POLL_MS = 2000;
// Cell values shown in color (see the page's style).
const STATES = new Set(["up", "down", "leader", "running", "ready", "succeeded", "deployed", "failed", "lost"]);

// A token passed as #token=… moves into sessionStorage and out of the address bar.
(function takeTokenFromLink() {
  const m = location.hash.match(/^#token=(.+)$/);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function table(title, headers, rows) {
  const section = el("section");
  section.appendChild(el("h2", title));
  if (rows.length === 0) {
    section.appendChild(el("div", "none", "muted"));
    return section;
  }
  const t = el("table");
  const head = el("tr");
  headers.forEach(h => head.appendChild(el("th", h)));
  t.appendChild(head);
  rows.forEach(cells => {
    const tr = el("tr");
    cells.forEach(c => {
      const td = el("td", c === null || c === undefined ? "" : c);
      if (STATES.has(c)) td.className = c;
      tr.appendChild(td);
    });
    t.appendChild(tr);
  });
  section.appendChild(t);
  return section;
}

function time(ms) {
  return ms ? new Date(ms).toISOString().replace(".000", "") : "";
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function render(v) {
  document.getElementById("summary").textContent =
    `leader: node ${v.leader ?? "none"} · term ${v.term} · answered by node ${v.answered_by} · ` +
    `updated ${new Date().toLocaleTimeString()}`;
  const content = document.getElementById("content");
  content.replaceChildren(
    table("Nodes", ["node", "address", "role", "status", "CPU used / offered", "memory used / offered", "GPUs"],
      v.nodes.map(n => [
        "node " + n.id, n.addr, n.role, n.status,
        `${n.cpu.used.toFixed(1)} / ${n.cpu.capacity.toFixed(1)}`,
        `${n.memory_mib.used} / ${n.memory_mib.capacity} MiB`,
        n.gpus.map(g => `${g.index}:${g.model}${g.leased_to ? " → " + g.leased_to : " free"}`).join(", "),
      ])),
    table("Apps and functions", ["app", "version", "state", "function", "replicas", "running", "waiting", "queued", "pending"],
      v.apps.flatMap(a => (a.functions.length ? a.functions : [null]).map(f => [
        a.name, a.version, a.state,
        f ? f.name : "",
        f ? Object.entries(f.replicas).map(([s, n]) => `${n} ${s}`).join(", ") || "0" : "",
        f ? f.running : "", f ? f.waiting : "", f ? f.queued : "", f ? f.pending : "",
      ]))),
    table("Sandboxes", ["sandbox", "name", "state", "node", "image", "generation", "last snapshot", "exit code"],
      v.sandboxes.map(s => [s.id, s.name, s.state, "node " + s.node, s.image, s.generation, s.last_snapshot, s.exit_code])),
    table("Schedules", ["schedule", "paused", "next fire", "last fired", "recent runs"],
      v.schedules.map(s => [
        `${s.app}/${s.function}`, s.paused ? "yes" : "no", time(s.next_fire_at_ms), time(s.last_fired_at_ms),
        s.runs.map(r => `${r.id} ${r.state}`).join(", "),
      ])),
    table("Snapshots", ["snapshot", "kind", "sandbox", "state", "size", "replicas"],
      v.snapshots.map(s => [s.id, s.kind, s.sandbox, s.state, bytes(s.size_bytes), s.replicas.map(r => "node " + r).join(", ")])),
    table("Events (newest first)", ["time", "kind", "subject", "node", "what happened"],
      v.events.map(e => [
        time(e.at_ms), e.kind, e.subject, e.node === null ? "" : "node " + e.node,
        e.repeats ? `${e.message} (×${e.repeats + 1})` : e.message,
      ])),
  );
}

async function poll() {
  const token = sessionStorage.getItem(KEY);
  const headers = token ? { "Authorization": "Bearer " + token } : {};
  const error = document.getElementById("error");
  try {
    const resp = await fetch("/api/dashboard", { headers, cache: "no-store" });
    if (resp.status === 401) {
      sessionStorage.removeItem(KEY);
      document.getElementById("login").style.display = "block";
      document.getElementById("content").replaceChildren();
      document.getElementById("summary").textContent = "";
      if (token) error.textContent = "That token was refused.";
      return;
    }
    if (!resp.ok) throw new Error(`${resp.status} ${await resp.text()}`);
    document.getElementById("login").style.display = "none";
    error.textContent = "";
    render(await resp.json());
  } catch (e) {
    error.textContent = "cannot reach the node: " + e.message;
  }
}

document.getElementById("login").addEventListener("submit", ev => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("token").value.trim());
  document.getElementById("token").value = "";
  poll();
});

poll();
setInterval(poll, POLL_MS);
