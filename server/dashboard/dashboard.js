// hydra dashboard: the user's jobs with live progress, and a job page with
// the effect-table heatmap, the direct-vs-total scatter and the summary
// table. Plain JavaScript, no libraries; the bearer token lives in this tab's
// sessionStorage only and goes out only in the Authorization header.
"use strict";

const $ = (id) => document.getElementById(id);
let timer = null;

function token() { return sessionStorage.getItem("hydra-token") || ""; }

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  const text = await r.text();
  if (!r.ok) {
    let msg = text;
    try {
      const e = JSON.parse(text).error;
      msg = (e.field ? e.field + ": " : "") + e.message;
    } catch (_) { /* not JSON */ }
    const err = new Error(msg);
    err.status = r.status;
    throw err;
  }
  return text;
}

function show(view) {
  for (const v of ["login-view", "jobs-view", "job-view"]) $(v).hidden = v !== view;
  $("logout").hidden = view === "login-view";
}

function fmt(x, d = 3) { return typeof x === "number" && isFinite(x) ? x.toFixed(d) : "–"; }

function clearTimer() { if (timer) { clearTimeout(timer); timer = null; } }

function fail(e) {
  if (e.status === 401) {
    sessionStorage.removeItem("hydra-token");
    $("login-error").textContent = "the server does not know this token";
    show("login-view");
    return;
  }
  $("error").textContent = String(e.message || e);
}

// ---- the job list ----
async function listJobs() {
  clearTimer();
  show("jobs-view");
  const body = $("jobs").querySelector("tbody");
  try {
    const jobs = JSON.parse(await api("/v1/jobs")).jobs;
    $("error").textContent = "";
    body.replaceChildren();
    let live = false;
    for (const j of jobs) {
      const p = j.progress || {};
      const tr = document.createElement("tr");
      tr.dataset.id = j.id;
      const a = document.createElement("a");
      a.href = "#job=" + encodeURIComponent(j.id);
      a.textContent = j.id;
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("div");
      fill.style.width = (p.variants_total ? 100 * p.variants_done / p.variants_total : 0) + "%";
      bar.append(fill);
      const cells = [a, j.state, j.model, bar, String(j.rows)];
      for (const c of cells) {
        const td = document.createElement("td");
        td.append(c);
        tr.append(td);
      }
      body.append(tr);
      live = live || j.state === "queued" || j.state === "running";
    }
    if (live) timer = setTimeout(listJobs, 2000);
  } catch (e) { fail(e); }
}

// ---- one job ----
function color(v, lim) {
  // blue for positive, red for negative changes, white at zero
  const t = Math.max(-1, Math.min(1, lim > 0 ? v / lim : 0));
  const a = Math.round(255 * (1 - Math.abs(t)));
  return t >= 0 ? `rgb(${a},${a},255)` : `rgb(255,${a},${a})`;
}

// a summary row's label: its component, and a grid's position
function rowLabel(r) { return r.position === undefined ? r.component : `${r.component} @${r.position}`; }

// A per-position grid: rows the components (header order), columns the
// grid's positions, cells the mean total effect for the method.
function drawGrid(rows, header, method) {
  const table = $("gridmap");
  table.replaceChildren();
  const sums = rows.filter((r) => r.method === method);
  let lim = 0;
  for (const r of sums) if (r.total_effect && isFinite(r.total_effect.mean)) lim = Math.max(lim, Math.abs(r.total_effect.mean));
  $("grid-lim").textContent = "±" + fmt(lim);
  const head = document.createElement("thead");
  const htr = document.createElement("tr");
  htr.append(document.createElement("th"));
  for (const p of header.grid) {
    const th = document.createElement("th");
    th.textContent = String(p);
    htr.append(th);
  }
  head.append(htr);
  const body = document.createElement("tbody");
  for (const c of header.components) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = c;
    tr.append(th);
    for (const p of header.grid) {
      const r = sums.find((x) => x.component === c && x.position === p);
      const v = r && r.total_effect ? r.total_effect.mean : null;
      const td = document.createElement("td");
      td.className = "cell";
      td.dataset.component = c;
      td.dataset.position = String(p);
      td.dataset.value = String(v);
      td.title = `${c} at position ${p}: total effect ${fmt(v, 4)}`;
      td.style.background = typeof v === "number" ? color(v, lim) : "#ddd";
      tr.append(td);
    }
    body.append(tr);
  }
  table.append(head, body);
}

function drawHeatmap(rows, slots, method) {
  const table = $("heatmap");
  table.replaceChildren();
  const sums = rows.filter((r) => r.method === method);
  let lim = 0;
  for (const r of sums) for (const v of r.effects) if (typeof v === "number") lim = Math.max(lim, Math.abs(v));
  const head = document.createElement("thead");
  const htr = document.createElement("tr");
  htr.append(document.createElement("th"));
  for (const s of slots) {
    const th = document.createElement("th");
    th.textContent = s;
    htr.append(th);
  }
  head.append(htr);
  const body = document.createElement("tbody");
  for (const r of sums) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = rowLabel(r);
    tr.append(th);
    r.effects.forEach((v, k) => {
      const td = document.createElement("td");
      td.className = "cell";
      td.dataset.component = r.component;
      td.dataset.slot = slots[k];
      td.dataset.value = String(v);
      td.title = `${r.component} ablated: ${slots[k]} direct effect changes by ${fmt(v, 4)}`;
      td.style.background = typeof v === "number" ? color(v, lim) : "#ddd";
      tr.append(td);
    });
    body.append(tr);
  }
  table.append(head, body);
}

function drawScatter(rows, method) {
  const svg = $("scatter");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const pts = rows.filter((r) => r.method === method)
    .map((r) => ({ c: rowLabel(r), x: r.direct_effect.mean, y: r.total_effect.mean }))
    .filter((p) => isFinite(p.x) && isFinite(p.y));
  const all = pts.flatMap((p) => [p.x, p.y]).concat([0]);
  const lo = Math.min(...all), hi = Math.max(...all), pad = 0.05 * (hi - lo || 1);
  const a = lo - pad, b = hi + pad, W = 420, M = 30;
  const sx = (x) => M + (x - a) / (b - a) * (W - 2 * M);
  const sy = (y) => W - M - (y - a) / (b - a) * (W - 2 * M);
  const line = (x1, y1, x2, y2, dash) => {
    const l = document.createElementNS(ns, "line");
    Object.entries({ x1, y1, x2, y2, stroke: "#888", "stroke-dasharray": dash || "" })
      .forEach(([k, v]) => l.setAttribute(k, v));
    svg.append(l);
  };
  line(sx(a), sy(a), sx(b), sy(b), "4 3"); // y = x
  line(sx(a), sy(0), sx(b), sy(0));
  line(sx(0), sy(a), sx(0), sy(b));
  for (const p of pts) {
    const c = document.createElementNS(ns, "circle");
    c.setAttribute("cx", sx(p.x));
    c.setAttribute("cy", sy(p.y));
    c.setAttribute("r", 4);
    c.setAttribute("class", p.c.startsWith("attn") ? "attn" : p.c.startsWith("mlp") ? "mlp" : "other");
    c.dataset.component = p.c;
    const t = document.createElementNS(ns, "title");
    t.textContent = `${p.c}: direct ${fmt(p.x)}, total ${fmt(p.y)}`;
    c.append(t);
    svg.append(c);
  }
  const label = (x, y, s) => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x);
    t.setAttribute("y", y);
    t.setAttribute("font-size", "11");
    t.textContent = s;
    svg.append(t);
  };
  label(W / 2 - 40, W - 8, "direct effect");
  label(4, 14, "total effect");
}

function drawSummary(rows) {
  const body = $("summary").querySelector("tbody");
  body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    const vals = [rowLabel(r), r.method, String(r.n), fmt(r.direct_effect.mean), fmt(r.total_effect.mean),
      fmt(r.compensation.mean), fmt(r.compensation_attn.mean), fmt(r.compensation_mlp.mean),
      fmt(r.fit && r.fit.slope, 2), fmt(r.fit && r.fit.r2, 2)];
    for (const v of vals) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    if (r.fit && r.fit.undefined) tr.title = `slope and R² shown as –: ${r.fit.undefined}`;
    body.append(tr);
  }
}

async function showJob(id) {
  clearTimer();
  show("job-view");
  $("job-title").textContent = "job " + id;
  try {
    const st = JSON.parse(await api("/v1/jobs/" + encodeURIComponent(id)));
    const p = st.progress || {};
    $("job-state").textContent = `${st.state} · model ${st.model} · ${p.variants_done}/${p.variants_total} ablated runs`
      + (st.error ? " · " + st.error : "") + (st.waiting ? " · " + st.waiting : "");
    $("job-progress").firstElementChild.style.width =
      (p.variants_total ? 100 * p.variants_done / p.variants_total : 0) + "%";
    if (st.state === "queued" || st.state === "running") {
      $("job-body").hidden = true;
      timer = setTimeout(() => showJob(id), 1000);
      return;
    }
    const text = await api("/v1/jobs/" + encodeURIComponent(id) + "/results");
    const rows = text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
    const header = rows.find((r) => r.type === "header") || { slots: [] };
    const summary = rows.filter((r) => r.type === "summary");
    $("job-body").hidden = summary.length === 0;
    const methods = [...new Set(summary.map((r) => r.method))];
    const sel = $("method");
    sel.replaceChildren(...methods.map((m) => { const o = document.createElement("option"); o.textContent = m; return o; }));
    $("grid-section").hidden = !header.grid;
    const draw = () => {
      if (header.grid) drawGrid(summary, header, sel.value);
      drawHeatmap(summary, header.slots, sel.value);
      drawScatter(summary, sel.value);
    };
    sel.onchange = draw;
    draw();
    drawSummary(summary);
    document.body.dataset.ready = id; // for tests: the page has drawn this job
  } catch (e) { fail(e); }
}

function route() {
  $("error").textContent = "";
  delete document.body.dataset.ready;
  if (!token()) { clearTimer(); show("login-view"); return; }
  const m = location.hash.match(/^#job=(.+)$/);
  if (m) showJob(decodeURIComponent(m[1])); else listJobs();
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("hydra-token", $("token").value.trim());
  $("token").value = "";
  $("login-error").textContent = "";
  route();
});
$("logout").addEventListener("click", () => { sessionStorage.removeItem("hydra-token"); location.hash = ""; route(); });
window.addEventListener("hashchange", route);
route();
