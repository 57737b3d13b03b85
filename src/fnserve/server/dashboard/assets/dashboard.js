// fnserve dashboard: the state document every 2 s (api/state), events as they happen (api/events, SSE).
// Plain DOM, no library; every value from the server goes through textContent, never innerHTML.
"use strict";

const KEEP = { requests: 300, output: 500, messages: 200 };
const WINDOW = 300; // s of latency history (feed.WINDOW)
const BUCKET = 5; // s per point (feed.BUCKET)
let outputFilter = "";
let stateTimer = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function clock(t) {
  const d = new Date(t * 1000);
  return d.toTimeString().slice(0, 8);
}

function duration(s) {
  if (s === null || s === undefined) return "?";
  if (s < 60) return s.toFixed(0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function ms(v) {
  return v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0);
}

function stateClass(state) {
  return "badge state-" + state.replace(/ /g, "-");
}

// ---------------------------------------------------------------- latency chart (SVG)
const SVG = "http://www.w3.org/2000/svg";

function chart(points, now) {
  const w = 250, h = 54, pad = 3;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("role", "img");
  if (!points.length) return svg;
  const top = Math.max(1, ...points.map((p) => p[2])) * 1.15;
  // the last 5 minutes, or since the first request when that is less (at least one minute)
  const start = Math.max(now - WINDOW, Math.min(points[0][0], now - 60));
  const x = (t) => pad + ((t - start) / (now - start)) * (w - 2 * pad);
  const y = (v) => h - pad - (v / top) * (h - 2 * pad);
  for (const [index, colour] of [[2, "var(--p95)"], [1, "var(--p50)"]]) {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", colour);
    line.setAttribute("stroke-width", "1.6");
    line.setAttribute("points", points.map((p) => `${x(p[0] + BUCKET / 2).toFixed(1)},${y(p[index]).toFixed(1)}`).join(" "));
    svg.append(line);
    for (const p of points) {
      const dot = document.createElementNS(SVG, "circle");
      dot.setAttribute("cx", x(p[0] + BUCKET / 2).toFixed(1));
      dot.setAttribute("cy", y(p[index]).toFixed(1));
      dot.setAttribute("r", "1.8");
      dot.setAttribute("fill", colour);
      svg.append(dot);
    }
  }
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", pad + 2);
  label.setAttribute("y", 11);
  label.setAttribute("text-anchor", "start");
  label.setAttribute("font-size", "9");
  label.setAttribute("fill", "#6b6b76");
  label.textContent = ms(top / 1.15) + " ms";
  svg.append(label);
  return svg;
}

// ---------------------------------------------------------------- state
function renderFunctions(state) {
  const box = document.getElementById("functions");
  box.replaceChildren();
  const functions = state.functions;
  document.getElementById("fn-count").textContent = functions.length + " function" + (functions.length === 1 ? "" : "s");
  if (!functions.length) {
    box.append(el("div", { class: "empty" }, "No functions. Add a file under api/ (or cloud-functions/), or run fnserve init."));
    return;
  }
  const filter = document.getElementById("output-filter");
  const known = new Set([...filter.options].map((o) => o.value));
  for (const fn of functions) {
    if (!known.has(fn.id)) filter.append(el("option", { value: fn.id }, fn.id));
    const insts = fn.instances.length
      ? fn.instances.map((i) => el("div", {},
          `pid ${i.pid} · ${i.state} · ${i.rss_mb !== null ? i.rss_mb.toFixed(1) + " MB" : "? MB"} · up ${duration(i.uptime_s)}` +
          (i.inflight ? ` · ${i.inflight} in flight` : "")))
      : [el("div", { class: "meta" }, "no instance")];
    const last = fn.latency.length ? fn.latency[fn.latency.length - 1] : null;
    const legend = el("div", { class: "legend" },
      el("span", { class: "p50" }, "p50 " + (last ? ms(last[1]) + " ms" : "–")), "  ",
      el("span", { class: "p95" }, "p95 " + (last ? ms(last[2]) + " ms" : "–")),
      last ? `  (${last[3]} req / ${BUCKET} s)` : "  no requests in the last 5 min");
    const row = el("div", { class: "fn", "data-function": fn.id, "data-state": fn.state },
      el("div", {},
        el("div", { class: "id" }, fn.id),
        el("div", { class: "meta" }, `${fn.route || "(no route)"} · ${fn.kind} · ${fn.cold_starts} cold start${fn.cold_starts === 1 ? "" : "s"}`),
        el("div", {}, el("span", { class: stateClass(fn.state) }, fn.state)),
        el("div", { class: "detail" }, fn.detail)),
      el("div", { class: "insts" }, ...insts),
      el("div", { class: "chart", title: "latency over the last 5 minutes (" + BUCKET + " s buckets)" }, chart(fn.latency, state.server.time), legend));
    if (fn.error && (fn.error.traceback || fn.error.hint)) {
      row.append(el("pre", { class: "trace" }, (fn.error.traceback || fn.error.message) + (fn.error.hint ? "\nhint: " + fn.error.hint : "")));
    }
    box.append(row);
  }
}

function renderRoutes(routes) {
  const body = document.querySelector("#routes tbody");
  const aliases = {};  // Vercel's /api/x.py aliases: one note under their route, not a second row
  for (const r of routes) if (r.match === "alias") (aliases[r.file] = aliases[r.file] || []).push(r.pattern);
  body.replaceChildren(...routes.filter((r) => r.match !== "alias").map((r) => el("tr", {},
    el("td", { class: "mono" }, r.pattern, aliases[r.file] ? el("div", { class: "meta" }, "also " + aliases[r.file].join(", ")) : null),
    el("td", { class: "mono" }, r.methods.join(", ")), el("td", {}, r.kind),
    el("td", { class: "mono" }, r.file), el("td", {}, r.match))));
  if (!routes.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "empty" }, "no routes")));
}

function renderDeps(deps) {
  const box = document.getElementById("deps-state");
  const lines = document.getElementById("deps");
  if (!deps) {
    box.textContent = "managed by fnserve start (installed before it served)";
    return;
  }
  const words = { off: "install is off: functions run with fnserve's interpreter", none: "no environment yet",
    ready: `ready: ${deps.requirements.length} requirement${deps.requirements.length === 1 ? "" : "s"}`,
    installing: "installing " + (deps.installing.join(", ") || "dependencies") + "…", failed: "install failed" };
  box.replaceChildren(el("div", {},
    el("span", { class: stateClass(deps.state === "failed" ? "load error" : deps.state === "ready" ? "ready" : "loading") }, deps.state),
    " ", words[deps.state] || deps.state, deps.python ? el("div", { class: "meta mono" }, deps.python) : null,
    deps.error ? el("pre", { class: "mono s5" }, deps.error) : null));
  lines.replaceChildren(...deps.lines.map((m) => el("div", {}, el("span", { class: "t" }, clock(m.t)), m.msg.replace(/^deps: /, ""))));
}

async function refresh() {
  try {
    const response = await fetch("api/state", { cache: "no-store" });
    const state = await response.json();
    document.getElementById("command").textContent = state.server.command;
    document.getElementById("root").textContent = state.server.root || "";
    const problem = document.getElementById("problem");
    problem.style.display = state.problem ? "block" : "none";
    problem.textContent = state.problem || "";
    renderFunctions(state);
    renderRoutes(state.routes);
    renderDeps(state.deps);
  } catch (error) {
    document.getElementById("live").textContent = "server unreachable";
  }
}

function refreshSoon() {
  if (stateTimer === null) stateTimer = setTimeout(() => { stateTimer = null; refresh(); }, 150);
}

// ---------------------------------------------------------------- events
function trim(container, keep) {
  while (container.children.length > keep) container.lastElementChild.remove();
}

function addRequest(r) {
  const body = document.querySelector("#requests tbody");
  const status = r.status || 0;
  const row = el("tr", { class: "request", "data-path": r.path, "data-status": status },
    el("td", { class: "mono" }, clock(r.t)), el("td", { class: "mono" }, r.method), el("td", { class: "mono path" }, r.path),
    el("td", { class: "num mono s" + String(status)[0] }, status || "---"), el("td", { class: "num mono" }, ms(r.ms)),
    el("td", { class: "mono" }, r.function),
    el("td", { class: r.cold === true ? "cold" : "warm" }, r.cold === true ? "cold" : r.cold === false ? "warm" : ""));
  if (r.id) row.title = "request id " + r.id + (r.pid ? ", worker pid " + r.pid : "");
  body.prepend(row);
  trim(body, KEEP.requests);
  if (r.cold) refreshSoon();
}

function addOutput(o) {
  const box = document.getElementById("output");
  const line = el("div", { "data-function": o.function, class: o.stream === "stderr" ? "stderr" : "" },
    el("span", { class: "t" }, clock(o.t)), el("span", { class: "who" }, `[${o.function}${o.pid ? " " + o.pid : ""}]`), o.line);
  if (outputFilter && o.function !== outputFilter) line.style.display = "none";
  box.prepend(line);
  trim(box, KEEP.output);
}

function addMessage(m) {
  const box = document.getElementById("messages");
  box.prepend(el("div", { class: m.level }, el("span", { class: "t" }, clock(m.t)), m.msg));
  trim(box, KEEP.messages);
  refreshSoon();
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("api/events");
  source.onopen = () => { live.textContent = "live"; live.className = "on"; };
  source.onerror = () => { live.textContent = "reconnecting"; live.className = ""; };
  source.addEventListener("request", (e) => addRequest(JSON.parse(e.data)));
  source.addEventListener("output", (e) => addOutput(JSON.parse(e.data)));
  source.addEventListener("message", (e) => addMessage(JSON.parse(e.data)));
}

document.getElementById("output-filter").addEventListener("change", (e) => {
  outputFilter = e.target.value;
  for (const line of document.getElementById("output").children) {
    line.style.display = !outputFilter || line.dataset.function === outputFilter ? "" : "none";
  }
});

refresh();
connect();
setInterval(refresh, 2000);
