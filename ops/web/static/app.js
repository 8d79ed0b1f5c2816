// Live dashboard (server-sent events from /events), small charts, and the
// failover confirmation. No inline script: the pages' CSP forbids it.
"use strict";

function chart(id, values) {
  const svg = document.getElementById(id);
  if (!svg) return;
  const w = svg.width.baseVal.value, h = svg.height.baseVal.value;
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${(i * w / Math.max(1, values.length - 1)).toFixed(1)},${(h - 4 - v * (h - 12) / max).toFixed(1)}`);
  svg.innerHTML = `<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="${pts.join(" ")}"/>` +
    `<text x="4" y="12" font-size="10" fill="#555">max ${max}</text>`;
}

function setText(root, sel, text) {
  const el = root.querySelector(sel);
  if (el && el.textContent !== String(text)) el.textContent = text;
}

function startDashboard(box) {
  const history = { calls: [], drops: [], shed: [] };
  let last = null;
  const src = new EventSource(box.dataset.events);
  src.onmessage = (msg) => {
    const d = JSON.parse(msg.data);
    let drops = 0, shed = 0, calls = 0;
    for (const n of d.nodes) {
      const el = box.querySelector(`.node[data-socket="${CSS.escape(n.socket)}"]`);
      if (!n.reachable) { if (el) setText(el, ".role", "unreachable"); continue; }
      drops += Object.values(n.drops).reduce((a, b) => a + b, 0);
      shed += n.shed;
      if (n.socket === d.active) calls = n.calls;
      if (!el) continue;
      setText(el, ".node-name", n.node);
      const role = el.querySelector(".role");
      if (role) { role.textContent = n.role; role.className = `role role-${n.role}`; }
      setText(el, ".epoch", n.epoch);
      setText(el, ".forwarding", n.forwarding ? "yes" : "no");
      setText(el, ".replication", n.replication);
      setText(el, ".head", `${n.journal_head} / ${n.applied}`);
      setText(el, ".peer", n.peer ? `${n.peer.role || "unknown"} (epoch ${n.peer.epoch}), heard ${n.peer.seen_ago_ms ?? "never"} ms ago` : "none");
      setText(el, ".lag", `${n.peer && n.peer.lag_events != null ? n.peer.lag_events : "-"} events`);
      setText(el, ".counts", `${n.calls} / ${n.registrations} / ${n.pinholes}`);
      setText(el, ".shed", `${n.shed} shed, ${n.admitted} admitted${n.overloaded ? " OVERLOADED" : ""}`);
      const table = el.querySelector(".drops");
      if (table) {
        const rows = Object.entries(n.drops);
        table.replaceChildren(...(rows.length ? rows : [["none", ""]]).map(([k, v]) => {
          const tr = document.createElement("tr");
          for (const t of [k, v]) { const td = document.createElement("td"); td.textContent = t; tr.appendChild(td); }
          return tr;
        }));
      }
    }
    for (const [alg, c] of Object.entries(d.per_alg)) {
      const tr = box.querySelector(`#per-alg tr[data-alg="${alg}"]`);
      if (!tr) continue;
      for (const k of ["calls", "pinholes", "registrations", "endpoints"]) setText(tr, `.${k}`, c[k]);
    }
    history.calls.push(calls);
    history.drops.push(last ? Math.max(0, drops - last.drops) : 0);
    history.shed.push(last ? Math.max(0, shed - last.shed) : 0);
    last = { drops, shed };
    for (const k of Object.keys(history)) {
      if (history[k].length > 120) history[k].shift();
      chart(`chart-${k}`, history[k]);
    }
    box.dataset.updates = String(Number(box.dataset.updates || 0) + 1);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("dashboard");
  if (box) startDashboard(box);
  const form = document.getElementById("failover-form");
  if (form) form.addEventListener("submit", (e) => {
    if (!window.confirm(form.dataset.confirm)) e.preventDefault();
  });
});
