// The live view: polls /api/state every second and draws each machine. Every string a
// machine sent is written with textContent, never as HTML.
"use strict";

const REFRESH_MS = 1000;
const byKey = new Map(); // machine key -> its section

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function num(n) {
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: 0 });
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function seconds(s) {
  if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
  if (s < 1) return (s * 1e3).toFixed(1) + " ms";
  return s.toFixed(2) + " s";
}

function pct(x) { return Math.round(Math.max(0, x) * 100) + "%"; }

function section(m) {
  const key = m.queue + "\u0000" + m.name;
  let s = byKey.get(key);
  if (!s) {
    s = document.getElementById("machine").content.firstElementChild.cloneNode(true);
    byKey.set(key, s);
    document.getElementById("machines").appendChild(s);
  }
  return [key, s];
}

function drawCores(box, cores) {
  while (box.children.length > cores.length) box.lastChild.remove();
  cores.forEach((c, i) => {
    let bar = box.children[i];
    if (!bar) {
      bar = el("div", "core");
      bar.append(el("div", "u"), el("div", "s"), el("span", "n", String(i)));
      box.appendChild(bar);
    }
    bar.dataset.core = String(i);
    bar.dataset.busy = c.busy.toFixed(3);
    bar.title = "core " + i + ": " + pct(c.busy) + " busy (user " + pct(c.user) + ", system " + pct(c.system) + ")";
    // user and system share the busy part; what else was busy (irq, steal) goes with system
    const user = Math.min(c.user, c.busy);
    bar.children[0].style.height = (user * 100).toFixed(1) + "%";
    bar.children[1].style.height = (Math.max(0, c.busy - user) * 100).toFixed(1) + "%";
  });
}

function fillRows(tbody, rows, empty, cols) {
  tbody.replaceChildren();
  if (rows.length === 0) {
    const tr = el("tr");
    const td = el("td", "empty", empty);
    td.colSpan = cols;
    tr.appendChild(td);
    tbody.appendChild(tr);
    return;
  }
  for (const r of rows) tbody.appendChild(r);
}

function workerRow(w) {
  const tr = el("tr");
  tr.dataset.slot = String(w.slot);
  tr.dataset.pid = String(w.pid);
  tr.dataset.state = w.state;
  const cpu = el("td");
  const bar = el("span", "bar");
  bar.style.width = Math.min(60, Math.round(w.utilization * 60)) + "px";
  cpu.append(bar, document.createTextNode(pct(w.utilization)));
  tr.append(el("td", "", String(w.slot)), el("td", "", w.pid ? String(w.pid) : "–"),
    el("td", "state-" + w.state, w.state), cpu, el("td", "", seconds(w.cpuSeconds)), el("td", "", bytes(w.rss)),
    el("td", "", String(w.processes)), el("td", "", num(w.tasks)), el("td", "", num(w.failed)), el("td", "", String(w.restarts)));
  return tr;
}

function draw(m) {
  const [key, s] = section(m);
  s.dataset.machine = m.name;
  s.dataset.queue = m.queue;
  s.classList.toggle("is-gone", m.gone);
  s.querySelector(".name").textContent = m.name;
  s.querySelector(".queue").textContent = m.queue ? "queue " + m.queue : "local pool";
  s.querySelector(".containment").textContent = m.containment ? "containment: " + m.containment : "";
  s.querySelector(".tps").textContent = num(m.tasksPerSecond);
  s.querySelector(".done").textContent = num(m.done);
  s.querySelector(".failed").textContent = num(m.failed);
  s.querySelector(".queued").textContent = m.queued < 0 ? "–" : num(m.queued);
  s.querySelector(".dead").textContent = m.deadLetters < 0 ? "–" : num(m.deadLetters);
  drawCores(s.querySelector(".cores"), m.cores);
  fillRows(s.querySelector(".workers tbody"), m.workers.map(workerRow), "no workers", 10);
  const kinds = Object.entries(m.failures).sort((a, b) => b[1] - a[1]);
  fillRows(s.querySelector(".failures tbody"), kinds.map(([k, n]) => {
    const tr = el("tr");
    tr.dataset.kind = k;
    tr.append(el("td", "", k), el("td", "", num(n)));
    return tr;
  }), "none", 2);
  fillRows(s.querySelector(".slowest tbody"), m.slowest.map(t => {
    const tr = el("tr");
    tr.dataset.task = String(t.id);
    tr.append(el("td", "", "#" + t.id), el("td", "", t.handler), el("td", "", String(t.worker)), el("td", "", seconds(t.seconds)));
    return tr;
  }), "none yet", 4);
  return key;
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("api/state", { cache: "no-store" });
    if (!r.ok) throw new Error(r.status + " " + r.statusText);
    const st = await r.json();
    document.getElementById("title").textContent = st.title;
    document.title = st.title;
    const live = new Set(st.machines.map(draw));
    for (const [key, s] of byKey) {
      if (!live.has(key)) { s.remove(); byKey.delete(key); }
    }
    status.textContent = st.machines.length + (st.machines.length === 1 ? " machine" : " machines") +
      " · updated " + new Date(st.now).toLocaleTimeString();
    status.classList.remove("stale");
    document.body.dataset.updated = st.now;
  } catch (e) {
    status.textContent = "no answer from the server: " + e.message;
    status.classList.add("stale");
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
