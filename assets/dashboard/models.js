// The models section: the catalog by capability, with install progress, load, unload, delete and where each runs.

import { del, post } from "./api.js";
import { bar, bytes, duration, h, replace } from "./dom.js";

const CAPABILITIES = [["asr", "Speech to text"], ["tts", "Text to speech"], ["llm", "Chat"]];
const IN_FLIGHT = ["queued", "downloading", "verifying"];

function fitCell(row) {
  if (row.fit === null || row.fit === undefined) return "–";
  const verdict = typeof row.fit === "string" ? row.fit : row.fit ? "fits" : "does not fit";
  return h("span", { className: `fit ${verdict.replace(/[^a-z-]/g, "-")}`, title: row.fit_reason || "" },
    verdict, row.recommended ? h("span", { className: "badge" }, "recommended") : null,
    row.fit_reason ? h("div", { className: "muted small" }, row.fit_reason) : null);
}

function languagesText(languages) {
  if (!Array.isArray(languages) || languages.length === 0) return "–";
  const shown = languages.slice(0, 6).join(", ");
  return languages.length > 6 ? `${shown} +${languages.length - 6} more` : shown;
}

function whereText(row) {
  if (!row.loaded) return "–";
  const parts = [row.device === "cuda" ? "GPU" : row.device === "cpu" ? "CPU" : row.device || "?"];
  if (row.device_detail) parts.push(`(${row.device_detail})`);
  if (row.memory_bytes) parts.push(`· ${bytes(row.memory_bytes)}`);
  return parts.join(" ");
}

function progress(row) {
  // The status row's `download`, or the older `progress` {done, total} of the models list.
  const download = row.download || (row.progress ? { bytes_done: row.progress.done, bytes_total: row.progress.total } : null);
  if (!download) return null;
  const done = download.bytes_done || 0;
  const total = download.bytes_total || 0;
  const text = total ? `${bytes(done)} of ${bytes(total)}` : bytes(done);
  const speed = download.speed_bps ? ` · ${bytes(download.speed_bps)}/s` : "";
  const eta = download.eta_sec ? ` · ${duration(download.eta_sec)} left` : "";
  return h("div", {}, bar(total ? done / total : 0, text), h("span", { className: "muted" }, text + speed + eta));
}

export class ModelsView {
  constructor(root, { refresh, report }) {
    this.root = root;
    this.refresh = refresh;
    this.report = report;
    this.admin = false;
    this.pending = new Set();
    this.unfolded = new Set();  // catalog folds the user opened stay open across refreshes
  }

  async act(id, verb, call) {
    this.pending.add(id);
    this.render(this.rows || []);
    try {
      await call();
    } catch (err) {
      this.report(`${verb} ${id}: ${err.message}`);
    } finally {
      this.pending.delete(id);
      await this.refresh();
    }
  }

  buttons(row) {
    const id = row.id;
    const path = `/admin/api/models/${encodeURIComponent(id)}`;
    const disabled = !this.admin || this.pending.has(id);
    const button = (verb, label, call) =>
      h("button", { id: `${verb}-${id}`, className: "admin", disabled, onclick: () => this.act(id, label, call) }, label);
    const state = row.state || (row.installed ? "installed" : "available");
    if (IN_FLIGHT.includes(state)) {
      return [button("pause", "Pause", () => del(`${path}?partial=keep`)), button("cancel", "Cancel", () => del(path))];
    }
    if (!row.installed && row.download && row.download.state === "paused") {
      return [button("install", "Resume", () => post(`${path}/install`)), button("cancel", "Discard", () => del(path))];
    }
    if (!row.installed) {
      return row.engine_available === false ? [h("span", { className: "muted" }, "engine not available")]
        : [button("install", "Install", () => post(`${path}/install`))];
    }
    if (row.loaded || state === "loaded") return [button("unload", "Unload", () => post(`${path}/unload`))];
    if (state === "loading" || state === "unloading") return [h("span", { className: "muted" }, `${state}…`)];
    return [button("load", "Load", () => post(`${path}/load`)), button("delete", "Delete", () => {
      if (!window.confirm(`Delete ${id} from this PC?`)) return Promise.resolve();
      return del(path);
    })];
  }

  line(row) {
    const paused = !row.installed && row.download && row.download.state === "paused";
    const state = paused ? "paused" : row.state || (row.installed ? "installed" : "available");
    return h("tr", { id: `model-${row.id}`, "data-state": state },
      h("td", {}, h("div", { className: "mono" }, row.id),
        row.quality || row.description ? h("div", { className: "muted" }, row.quality || row.description) : null),
      h("td", { className: "num" }, bytes(row.size_bytes)),
      h("td", {}, fitCell(row)),
      h("td", {}, languagesText(row.languages)),
      h("td", {}, h("span", { className: `state ${state}` }, state), progress(row),
        row.error ? h("div", { className: "error-text" }, row.error) : null),
      h("td", {}, whereText(row)),
      h("td", {}, this.buttons(row)));
  }

  table(rows) {
    const head = ["Model", "Size", "Fit", "Languages", "State", "Runs on", ""].map((t) => h("th", {}, t));
    return h("table", { className: "models" }, h("thead", {}, h("tr", {}, head)), h("tbody", {}, rows.map((r) => this.line(r))));
  }

  render(rows) {
    this.rows = rows;
    // Redraw only on a change: a redraw under the pointer swallows a click.
    const drawn = JSON.stringify([rows, [...this.pending], this.admin]);
    if (drawn === this.drawn) return;
    this.drawn = drawn;
    const groups = CAPABILITIES.map(([capability, title]) => {
      const members = rows.filter((r) => r.capability === capability);
      if (members.length === 0) return null;
      members.sort((a, b) => (a.size_bytes || 0) - (b.size_bytes || 0));
      // Installed models and downloads in flight first; the rest of the catalog folds away.
      const mine = members.filter((r) => r.installed || IN_FLIGHT.includes(r.state) || r.download);
      const more = members.filter((r) => !mine.includes(r));
      const folded = more.length ? h("details", { open: this.unfolded.has(capability) },
        h("summary", {}, `${more.length} more to install`), this.table(more)) : null;
      if (folded) folded.addEventListener("toggle", () => folded.open ? this.unfolded.add(capability) : this.unfolded.delete(capability));
      return h("div", { className: "group", id: `group-${capability}` }, h("h3", {}, title),
        mine.length ? this.table(mine) : h("p", { className: "muted" }, "None installed yet."), folded);
    });
    replace(this.root, groups);
  }

  busy() {
    return (this.rows || []).some((r) => IN_FLIGHT.includes(r.state) || r.state === "loading" || r.state === "unloading");
  }
}
