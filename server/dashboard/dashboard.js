// hydra dashboard: the user's jobs with names, times and live progress, and
// a job page with its times, rate, ETA and place in the queue, the
// effect-table heatmap, the direct-vs-total scatter and the summary table;
// while a job runs, its rows so far are streamed in and drawn as partial
// means. Plain JavaScript, no libraries; the bearer token lives in this tab's
// sessionStorage only and goes out only in the Authorization header.
"use strict";

const $ = (id) => document.getElementById(id);
let timer = null;
let live = null; // the running job's result stream: { id, rows, controller, done }

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

function stopLive() { if (live) { live.controller.abort(); live = null; } }

// unix seconds as "2026-12-07 04:47:48Z"; "–" for null
function utc(t) { return typeof t === "number" && t > 0 ? new Date(t * 1000).toISOString().slice(0, 19).replace("T", " ") + "Z" : "–"; }

function rate(p) { return typeof p.rate === "number" && p.rate > 0 ? p.rate.toFixed(1) + "/s" : "–"; }

function seconds(s) {
  if (typeof s !== "number" || s < 0) return "–";
  if (s < 60) return s.toFixed(0) + " s";
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor(s % 3600 / 60)} min`;
}

// "queued · 2 ahead" while a job waits its turn
function stateText(j) {
  return typeof j.queue_position === "number" ? `${j.state} · ${j.queue_position} ahead` : j.state;
}

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
      a.textContent = j.id.slice(0, 12);
      a.title = j.id;
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("div");
      fill.style.width = (p.variants_total ? 100 * p.variants_done / p.variants_total : 0) + "%";
      bar.append(fill);
      const labels = Object.entries(j.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
      const name = document.createElement("span");
      name.textContent = j.name || "–";
      if (labels) name.title = labels;
      const cells = [a, name, stateText(j), j.model, utc(j.created_at),
        j.prompts === null || j.prompts === undefined ? "–" : String(j.prompts),
        bar, rate(p), seconds(p.eta_s), String(j.rows)];
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

// a row's grid cell: its position, or on a grid over named spans its span
function cellOf(r) { return r.span !== undefined ? r.span : r.position; }

// a summary row's label: its component, and a grid's position or span
function rowLabel(r) { return cellOf(r) === undefined ? r.component : `${r.component} @${cellOf(r)}`; }

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
      const r = sums.find((x) => x.component === c && cellOf(x) === p);
      const v = r && r.total_effect ? r.total_effect.mean : null;
      const td = document.createElement("td");
      td.className = "cell";
      td.dataset.component = c;
      td.dataset.position = String(p);
      td.dataset.value = String(v);
      td.title = `${c} at ${header.grid_of === "span" ? "span" : "position"} ${p}: total effect ${fmt(v, 4)}`;
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
  // the scale leaves out each component's own cell (minus its direct effect,
  // which would wash the compensation out); those cells are clipped to it
  for (const r of sums)
    r.effects.forEach((v, k) => { if (typeof v === "number" && slots[k] !== r.component) lim = Math.max(lim, Math.abs(v)); });
  $("heat-lo").textContent = "−" + fmt(lim);
  $("heat-hi").textContent = "+" + fmt(lim);
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
      if (slots[k] === r.component) td.classList.add("own");
      td.title = `${r.component} ablated: ${slots[k]} direct effect changes by ${fmt(v, 4)}`
        + (slots[k] === r.component ? " (its own; the colour is clipped to the scale)" : "");
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
    .filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
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
  label(W - 110, W - 4, "direct effect");
  label(4, 14, "total effect");
  // tick numbers on both axes (the same scale), at round steps
  const step = Math.pow(10, Math.floor(Math.log10((b - a) / 4 || 1)));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => (b - a) / s <= 6) || 10 * step;
  for (let v = Math.ceil(a / nice) * nice; v <= b; v += nice) {
    const txt = Math.abs(v) < nice / 2 ? "0" : String(+v.toPrecision(3));
    const tx = document.createElementNS(ns, "text");
    Object.entries({ x: sx(v), y: W - M + 12, "font-size": "9", "text-anchor": "middle", class: "tick" })
      .forEach(([k, w]) => tx.setAttribute(k, w));
    tx.textContent = txt;
    const ty = document.createElementNS(ns, "text");
    Object.entries({ x: M - 3, y: sy(v) + 3, "font-size": "9", "text-anchor": "end", class: "tick" })
      .forEach(([k, w]) => ty.setAttribute(k, w));
    ty.textContent = txt;
    svg.append(tx, ty);
  }
  // the legend: one entry per kind of component drawn
  const kinds = [["attn", "attention"], ["mlp", "MLP"], ["other", "other"]]
    .filter(([k]) => pts.some((p) => (p.c.startsWith("attn") ? "attn" : p.c.startsWith("mlp") ? "mlp" : "other") === k));
  kinds.forEach(([k, name], i) => {
    const c = document.createElementNS(ns, "circle");
    Object.entries({ cx: W - 90, cy: 14 + 14 * i, r: 4, class: k }).forEach(([a2, w]) => c.setAttribute(a2, w));
    const t = document.createElementNS(ns, "text");
    Object.entries({ x: W - 82, y: 18 + 14 * i, "font-size": "11", class: "legend-entry" })
      .forEach(([a2, w]) => t.setAttribute(a2, w));
    t.textContent = name;
    svg.append(c, t);
  });
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

// The facts of a job: name, labels, times, counts, rate, ETA, queue.
function drawFacts(st) {
  const p = st.progress || {};
  const labels = Object.entries(st.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  const facts = [["name", st.name || "–"], ["labels", labels || "–"], ["state", stateText(st)],
    ["created", utc(st.created_at)], ["started", utc(st.started_at)], ["finished", utc(st.finished_at)],
    ["prompts", st.prompts === null || st.prompts === undefined ? "–" : String(st.prompts)],
    ["units", `${p.units_done}/${p.n_units}`], ["rate", rate(p)], ["ETA", seconds(p.eta_s)]];
  if (st.waiting) facts.push(["waiting", st.waiting]);
  if (st.error) facts.push(["error", st.error]);
  const body = $("job-facts").querySelector("tbody");
  body.replaceChildren(...facts.map(([k, v]) => {
    const tr = document.createElement("tr");
    tr.dataset.fact = k;
    const th = document.createElement("th");
    th.textContent = k;
    const td = document.createElement("td");
    td.textContent = v;
    tr.append(th, td);
    return tr;
  }));
}

// Reads the job's NDJSON results as they are committed, into live.rows.
async function follow(id) {
  const controller = new AbortController();
  live = { id, rows: [], controller, done: false };
  const mine = live;
  try {
    const r = await fetch("/v1/jobs/" + encodeURIComponent(id) + "/results",
      { headers: { Authorization: "Bearer " + token() }, signal: controller.signal });
    if (!r.ok || !r.body) return;
    const reader = r.body.getReader(), dec = new TextDecoder();
    let rest = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += dec.decode(value, { stream: true });
      const lines = rest.split("\n");
      rest = lines.pop();
      for (const l of lines) if (l.trim()) mine.rows.push(JSON.parse(l));
    }
  } catch (_) { /* aborted, or the connection dropped: the status poll goes on */ }
  mine.done = true;
}

function mean(xs) {
  const v = xs.filter((x) => typeof x === "number" && isFinite(x));
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
}

// Summary-shaped rows from the variant rows so far: per component, method
// (and grid position) the mean of each effect over the prompts done.
function partialSummary(rows) {
  const groups = new Map();
  for (const r of rows) {
    if (r.type !== "variant") continue;
    const key = `${r.component}|${r.method}|${cellOf(r)}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(r);
  }
  const out = [];
  for (const g of groups.values()) {
    const r0 = g[0], m = (k) => ({ mean: mean(g.map((r) => r[k])) });
    const effects = (r0.effects || []).map((_, k) => mean(g.map((r) => r.effects && r.effects[k])));
    out.push({ type: "summary", component: r0.component, method: r0.method, position: r0.position, span: r0.span,
      n: g.length, direct_effect: m("direct_effect"), total_effect: m("total_effect"),
      compensation: m("compensation"), compensation_attn: m("compensation_attn"),
      compensation_mlp: m("compensation_mlp"), fit: null, effects });
  }
  return out;
}

// Draws the results: the summary rows, or partial ones while the job runs.
function drawResults(id, rows, partial) {
  const header = rows.find((r) => r.type === "header") || { slots: [] };
  const summary = partial ? partialSummary(rows) : rows.filter((r) => r.type === "summary");
  $("job-body").hidden = summary.length === 0;
  $("partial").hidden = !partial || summary.length === 0;
  if (partial) {
    const prompts = new Set(rows.filter((r) => r.type === "variant").map((r) => r.prompt)).size;
    $("partial-n").textContent = `${prompts} of ${header.n_prompts || "?"} prompts`;
  }
  if (summary.length === 0) return;
  const methods = [...new Set(summary.map((r) => r.method))];
  const sel = $("method");
  const kept = sel.value;
  sel.replaceChildren(...methods.map((m) => { const o = document.createElement("option"); o.textContent = m; return o; }));
  if (methods.includes(kept)) sel.value = kept;
  $("grid-section").hidden = !header.grid;
  const draw = () => {
    if (header.grid) drawGrid(summary, header, sel.value);
    drawHeatmap(summary, header.slots, sel.value);
    drawScatter(summary, sel.value);
  };
  sel.onchange = draw;
  draw();
  drawSummary(summary);
  // for tests: what the page has drawn
  if (partial) document.body.dataset.partial = String(summary.reduce((a, r) => a + r.n, 0));
  else { delete document.body.dataset.partial; document.body.dataset.ready = id; }
}

async function showJob(id) {
  clearTimer();
  show("job-view");
  $("job-title").textContent = "job " + id;
  try {
    const st = JSON.parse(await api("/v1/jobs/" + encodeURIComponent(id)));
    const p = st.progress || {};
    $("job-title").textContent = "job " + st.id.slice(0, 12) + (st.name ? " · " + st.name : "");
    $("job-state").textContent = `${stateText(st)} · model ${st.model}`;
    $("job-count").textContent = `${p.variants_done}/${p.variants_total} ablated runs`;
    $("job-progress").firstElementChild.style.width =
      (p.variants_total ? 100 * p.variants_done / p.variants_total : 0) + "%";
    drawFacts(st);
    if (st.state === "queued" || st.state === "running") {
      if (!live || live.id !== st.id) { stopLive(); follow(st.id); }
      drawResults(st.id, live.rows, true);
      timer = setTimeout(() => showJob(id), 1000);
      return;
    }
    stopLive();
    const text = await api("/v1/jobs/" + encodeURIComponent(id) + "/results");
    const rows = text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
    drawResults(st.id, rows, false);
  } catch (e) { fail(e); }
}

function route() {
  stopLive();
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
