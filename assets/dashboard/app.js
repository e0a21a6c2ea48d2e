// The dashboard's main loop: poll status, models, metrics and logs; wire the switches.

import { get, post } from "./api.js";
import { metricCards } from "./charts.js";
import { bar, bytes, clock, duration, h, ms, replace } from "./dom.js";
import { ModelsView } from "./models.js";

const $ = (id) => document.getElementById(id);
const session = { admin: false, catalog: false };
let statusModels = {};

function report(message) {
  const note = $("error-note");
  note.textContent = message;
  note.hidden = !message;
}

const models = new ModelsView($("model-groups"), { refresh: () => refreshModels(), report });

function showStatus(s) {
  $("version").textContent = `v${s.version}`;
  $("address").textContent = s.address;
  $("uptime").textContent = `up ${duration(s.uptime_sec)}`;
  replace($("warnings"), (s.warnings || []).map((w) => h("li", {}, w)));
  const g = s.gpu || {};
  if (g.available) {
    const used = g.memory_used_bytes || 0;
    replace($("gpu"), h("div", {}, g.name), bar(g.memory_total_bytes ? used / g.memory_total_bytes : 0),
      h("div", { className: "muted" }, `${bytes(used)} of ${bytes(g.memory_total_bytes)} used · driver ${g.driver_version || "?"}`));
  } else {
    replace($("gpu"), h("div", {}, "No GPU in use"), h("div", { className: "muted" }, g.reason || ""));
  }
  const sys = s.system || {};
  const used = (sys.ram_total_bytes || 0) - (sys.ram_available_bytes || 0);
  replace($("ram"), bar(sys.ram_total_bytes ? used / sys.ram_total_bytes : 0),
    h("div", { className: "muted" }, `${bytes(used)} of ${bytes(sys.ram_total_bytes)} in use`));
  replace($("cpu"), h("div", {}, `${sys.cpu_count || "?"} cores`),
    s.game_mode && s.game_mode.active ? h("div", { className: "muted" }, `Game mode: ${s.game_mode.reason || "on"}`) : null);
  statusModels = Object.fromEntries((s.models || []).map((m) => [m.id, m]));
}

async function refreshModels() {
  try {
    // State and actions come from the models list; size need, fit and languages from the catalog.
    const [listed, catalog] = await Promise.all([get("/admin/api/models"),
      session.catalog ? get("/admin/api/catalog") : Promise.resolve({ data: [] })]);
    const described = Object.fromEntries((catalog.data || []).map((row) => [row.id, row]));
    const rows = (listed.data || []).map((row) => {
      const { installed, state, ...about } = described[row.id] || {};
      return { ...about, ...(statusModels[row.id] || {}), ...row };
    });
    models.render(rows);
  } catch (err) {
    report(`Models: ${err.message}`);
  }
}

function showRecent(snapshot) {
  replace($("recent"), snapshot.recent.slice(0, 30).map((r) => h("tr", { "data-request-id": r.request_id },
    h("td", {}, clock(r.ts)),
    h("td", { className: `s${r.status_class}` }, `${r.status}`),
    h("td", { className: "mono" }, `${r.method} ${r.path}`),
    h("td", {}, r.model || "–"),
    h("td", { className: "num" }, ms(r.latency_ms)),
    h("td", { className: "mono" }, r.request_id))));
}

async function refreshMetrics() {
  const snapshot = await get("/admin/api/metrics");
  $("window").textContent = `last ${snapshot.window_min} min`;
  showRecent(snapshot);
  replace($("metric-cards"), metricCards(snapshot));
}

async function refreshLogs() {
  if (!session.admin) {
    $("log-tail").textContent = "The log is shown after logging in from the tray.";
    return;
  }
  const source = $("log-source").value;
  const data = await get(`/admin/api/logs?source=${source}&lines=100`);
  const text = data.lines.map((l) => source === "server"
    ? `${clock(l.ts)} ${l.level} ${l.message}`
    : `${l.ts} ${l.status} ${l.method} ${l.path} ${l.latency_ms} ms ${l.model || ""} ${l.request_id}`);
  const tail = $("log-tail");
  const atEnd = tail.scrollTop + tail.clientHeight >= tail.scrollHeight - 4;
  tail.textContent = text.join("\n") || "(empty)";
  if (atEnd) tail.scrollTop = tail.scrollHeight;  // follow the newest lines unless the user scrolled up
}

async function refreshSwitches() {
  const obs = await get("/admin/api/observability");
  for (const name of ["metrics", "access_log", "payload"]) $(`switch-${name}`).checked = obs[name];
  $("obs-detail").textContent = `Access log: ${obs.access_log_dir} (${obs.access_log_dropped} dropped) · ` +
    `Captures: ${obs.payload_dir}`;
}

function wireSwitches() {
  for (const name of ["metrics", "access_log", "payload"]) {
    $(`switch-${name}`).addEventListener("change", async (event) => {
      try {
        await post("/admin/api/observability", { [name]: event.target.checked });
      } catch (err) {
        report(err.message);
      }
      await refreshSwitches();
    });
  }
  $("log-source").addEventListener("change", () => refreshLogs().catch((err) => report(err.message)));
  $("unload-all").addEventListener("click", async () => {
    try { await post("/admin/api/unload-all"); } catch (err) { report(err.message); }
    await refreshModels();
  });
}

async function tick() {
  try {
    showStatus(await get("/admin/api/status"));
    if ($("error-note").textContent.startsWith("Cannot reach")) report("");
    await refreshModels();
    await refreshMetrics();
    await refreshLogs();
    await refreshSwitches();
  } catch (err) {
    report(`Cannot reach aistack: ${err.message}`);
  }
  setTimeout(tick, models.busy() ? 1000 : 3000);
}

async function start() {
  Object.assign(session, await get("/dashboard/session"));
  models.admin = session.admin;
  $("login-note").hidden = session.admin;
  for (const el of document.querySelectorAll("input.admin, #unload-all")) el.disabled = !session.admin;
  wireSwitches();
  await tick();
  document.body.dataset.ready = "true";
}

start().catch((err) => report(err.message));
