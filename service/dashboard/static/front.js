// A job's results: the Pareto front per device over every evaluated subnet, the subnet panel
// (arch, figures, downloads), specialisation, predictor quality and hypervolume. Points sit at
// measured figures (val accuracy; latency timed where it was): a subnet that was only
// predicted is listed in the legend but not drawn unless the user asks for it. A subnet the
// finetuning stage trained has a second point at its fine-tuned val accuracy, an arrow from
// the inherited one to it; the front and the picks stay on the inherited figures.
import {
  COLORS, PLOT_CONFIG, SMALL_PLOT_CONFIG, fastScatter, api, archSummary, budgetText, download, errorNotice,
  fetchAll, fmtCount, fmtNum, h, latencyOf, notice, plotly, replace, table,
} from "./common.js";

const AXES = {
  latency: { label: "latency (ms)", title: "Latency" },
  macs: { label: "MACs", title: "MACs" },
  params: { label: "params", title: "Params" },
};
const FORMATS = [["onnx", "ONNX"], ["torchscript", "TorchScript"], ["pytorch", "PyTorch zip"]];
const SEARCHED_STATES = ["searching", "finetuning", "exporting", "succeeded", "failed", "cancelled"];
const FINETUNED_COLOR = "#059669";
const MEMBER_ROWS = 50;

const EXPORT_POLL_MS = 1000;
const EXPORT_WAIT_MS = 10 * 60_000;

/** A subnet's file in one format, saved by the browser: the panel's only calls to the export
 * and download API. A file not made yet is asked for (POST, needs the token), waited for, then
 * downloaded; a GET alone never makes one. `onState` hears "queued" / "running" meanwhile. */
async function downloadSubnet(subnetId, format, onState = () => {}) {
  let status = await api(`/subnets/${subnetId}/exports/${format}`);
  if (status.state !== "ready") {
    status = await api(`/subnets/${subnetId}/exports`, { method: "POST", body: { format } });
  }
  const deadline = Date.now() + EXPORT_WAIT_MS;
  while (status.state === "queued" || status.state === "running") {
    onState(status);
    if (Date.now() > deadline) throw new Error(`the ${format} export is still ${status.state}; try again later`);
    await new Promise((resolve) => setTimeout(resolve, EXPORT_POLL_MS));
    status = await api(`/subnets/${subnetId}/exports/${format}`);
  }
  if (status.state !== "ready") throw new Error(status.error || `the ${format} export ${status.state}`);
  return download(`/subnets/${subnetId}/download?format=${format}`, `subnet-${subnetId}.${format}`);
}

/** The fine-tuned weights (the finetuning stage's file: downloaded, never exported). */
async function downloadFinetuned(subnetId) {
  return download(`/subnets/${subnetId}/download?format=finetuned`, `subnet-${subnetId}.finetuned.pt`);
}

/** Which files of the subnet exist: its artifacts as the API lists them (an export with the
 * weights it has: a fine-tuned subnet can have both). */
function exportsText(subnet) {
  const files = subnet.artifacts || [];
  const weights = (a) => (a.weights && a.format !== "finetuned" ? `${a.weights} weights, ` : "");
  return files.length
    ? `Exported: ${files.map((a) => `${a.format || a.kind} (${weights(a)}${fmtCount(a.size_bytes)}B)`).join(", ")}`
    : "Not exported yet: a download asks the service to export it from the supernet (needs the token).";
}

/** The x value of a subnet on an axis: its latency on the device, or MACs / params. */
export function xOf(subnet, axis, device) {
  return axis === "latency" ? latencyOf(subnet, device) : subnet[axis];
}

/** The accuracy a point is drawn at: measured on val, or (a predicted-only subnet) predicted. */
const measuredOf = (subnet) => subnet.measured_accuracy ?? null;
const predictedOf = (subnet) => subnet.predicted_accuracy ?? null;
/** Val accuracy after the finetuning stage (measured); null where it did not train the subnet. */
export const finetunedOf = (subnet) => subnet.finetuned_accuracy ?? null;

/** "2.405 ms measured (table 2.31)" or "2.31 ms predicted by the table". */
export function latencyText(subnet, device) {
  const latency = subnet.latencies && subnet.latencies[device];
  if (!latency) return `no latency on ${device}`;
  if (latency.measured_ms != null) {
    const table = latency.predicted_ms != null ? ` (table ${fmtNum(latency.predicted_ms, 3)})` : "";
    return `${fmtNum(latency.measured_ms, 3)} ms measured${table}`;
  }
  return `${fmtNum(latency.predicted_ms, 3)} ms predicted by the table`;
}

/** "96.66% measured on val (predicted 97.20)" or "97.20% predicted, never measured"; a
 * fine-tuned subnet's figure after it: "96.66% ... → 97.80% fine-tuned (measured on val)". */
export function accuracyText(subnet) {
  const tuned = finetunedOf(subnet) != null ? ` → ${fmtNum(finetunedOf(subnet))}% fine-tuned (measured on val)` : "";
  if (subnet.measured_accuracy != null) {
    const predicted = subnet.predicted_accuracy != null ? ` (predicted ${fmtNum(subnet.predicted_accuracy)})` : "";
    return `${fmtNum(subnet.measured_accuracy)}% measured on val${predicted}${tuned}`;
  }
  return subnet.predicted_accuracy != null ? `${fmtNum(subnet.predicted_accuracy)}% predicted, never measured${tuned}` : `no accuracy${tuned}`;
}

/** "lr 0.01 · weight_decay 0.0001 · ..." */
function recipeText(finetune) {
  return Object.entries((finetune && finetune.recipe) || {}).map(([k, v]) => `${k} ${String(Number(Number(v).toPrecision(3)))}`).join(" · ");
}

/** The 2-D staircase of points no other point beats on both axes (the front is over more
 * objectives than the two drawn, so its members alone zigzag): a guide line, x ascending. */
export function envelope(xs, ys) {
  const order = xs.map((_, i) => i).sort((a, b) => xs[a] - xs[b] || ys[b] - ys[a]);
  const x = [];
  const y = [];
  let best = -Infinity;
  for (const i of order) {
    if (ys[i] > best) {
      best = ys[i];
      x.push(xs[i]);
      y.push(ys[i]);
    }
  }
  return { x, y };
}

/** The hover text of a subnet: its figures, then its arch, one dimension a line. */
export function hoverText(subnet, device) {
  return [
    `<b>#${subnet.id}</b> ${subnet.arch_id}`,
    `accuracy ${accuracyText(subnet)}`,
    `latency on ${device}: ${latencyText(subnet, device)}`,
    `MACs ${fmtCount(subnet.macs)} · params ${fmtCount(subnet.params)} · res ${subnet.resolution}`,
    ...archSummary(subnet.arch),
  ].join("<br>");
}

export class Results {
  constructor(area, job) {
    this.area = area;
    this.job = job;
    this.fronts = null; // null: not loaded
    this.subnets = [];
    this.byId = new Map();
    this.device = null;
    this.axis = "latency";
    this.selected = null;
    this.specialized = null; // {subnet, device, budget, seconds}
    this.loadedState = null;
    this.devices = null;
  }

  async update(job, events) {
    this.job = job;
    this.events = events;
    const searched = SEARCHED_STATES.includes(job.state);
    const stale = this.fronts === null || (this.fronts.length === 0 && searched) || this.loadedState !== job.state;
    if (searched && stale) {
      try {
        await this.load();
      } catch (error) {
        replace(this.area, h("div", { class: "card" }, h("h2", {}, "Pareto fronts"), errorNotice("Could not load the results", error)));
        return;
      }
    } else if (!searched) {
      this.fronts = [];
    }
    if (stale || !this.area.firstChild) this.render();
  }

  async load() {
    const [fronts, subnets] = await Promise.all([
      api(`/jobs/${this.job.id}/fronts`),
      fetchAll(`/jobs/${this.job.id}/subnets`, { sort: "macs" }),
    ]);
    this.fronts = fronts.data;
    this.subnets = subnets;
    this.byId = new Map(subnets.map((s) => [s.id, s]));
    for (const front of this.fronts) for (const m of front.members) if (!this.byId.has(m.id)) this.byId.set(m.id, m);
    if (!this.fronts.some((f) => f.device === this.device)) this.device = this.fronts.length ? this.fronts[0].device : null;
    this.loadedState = this.job.state;
  }

  front() {
    return this.fronts.find((f) => f.device === this.device) || null;
  }

  render() {
    const card = h("div", { class: "card", id: "fronts-card" }, h("h2", {}, "Pareto fronts"));
    const quality = h("div", { class: "card", id: "quality-card" });
    replace(this.area, card, quality);
    if (!this.fronts || this.fronts.length === 0) {
      card.append(this.emptyNotice());
      replace(quality, h("h2", {}, "Predictor quality and hypervolume"), this.qualityContent());
      return;
    }
    const deviceSelect = h("select", { id: "device-select", onchange: () => { this.device = deviceSelect.value; this.draw(); } },
      this.fronts.map((f) => h("option", { value: f.device, selected: f.device === this.device }, f.device)));
    const axisSelect = h("select", { id: "axis-select", onchange: () => { this.axis = axisSelect.value; this.draw(); } },
      Object.entries(AXES).map(([key, a]) => h("option", { value: key, selected: key === this.axis }, a.title)));
    this.plotDiv = h("div", { id: "front-plot", class: "plot-main" });
    this.panel = h("aside", { id: "subnet-panel", class: "panel" },
      h("p", { class: "muted" }, "Click a point to see its subnet: arch, figures and downloads."));
    this.info = h("p", { id: "front-info", class: "muted" });
    this.members = h("div", { id: "front-members" });
    card.append(
      h("div", { class: "controls" }, h("label", {}, "Device ", deviceSelect), h("label", {}, "x axis ", axisSelect)),
      h("div", { class: "plot-with-panel" }, h("div", {}, this.plotDiv, this.info), this.panel),
      this.specializeBox(),
      this.members);
    replace(quality, h("h2", {}, "Predictor quality and hypervolume"), this.qualityContent());
    this.draw();
  }

  emptyNotice() {
    const state = this.job.state;
    if (state === "failed") return notice("error", "No Pareto front: the job failed before its search finished.", this.job.error || "");
    if (state === "cancelled") return notice("warn", "No Pareto front: the job was cancelled before its search finished.", "");
    if (state === "succeeded") return notice("empty", "This job has no Pareto fronts.", "Its search stored none.");
    return notice("info", "No Pareto front yet.", "Fronts appear when the searching stage has finished; this page updates itself.");
  }

  /** Traces for the current device and axis: faded cloud, the front, best, picks. */
  traces() {
    const front = this.front();
    const device = this.device;
    const onFront = new Set(front.members.map((m) => m.id));
    const point = (subnets, yOf = measuredOf) => {
      const kept = subnets.filter((s) => xOf(s, this.axis, device) != null && yOf(s) != null);
      return {
        x: kept.map((s) => xOf(s, this.axis, device)), y: kept.map(yOf), customdata: kept.map((s) => s.id),
        hovertext: kept.map((s) => hoverText(s, device)), hovertemplate: "%{hovertext}<extra></extra>", count: kept.length,
      };
    };
    const cloud = point(this.subnets.filter((s) => !onFront.has(s.id)));
    const predictedOnly = point(this.subnets.filter((s) => measuredOf(s) == null), predictedOf);
    const members = point(front.members);
    // every fine-tuned subnet drawn at its inherited accuracy (on the front or in the cloud)
    const finetuned = point([...this.byId.values()].filter((s) => measuredOf(s) != null && finetunedOf(s) != null), finetunedOf);
    const traces = [
      { ...cloud, name: `other subnets, measured (${cloud.count})`, type: fastScatter(), mode: "markers", meta: "cloud",
        marker: { color: "#64748b", size: 6, opacity: 0.3 } },
      { ...envelope(members.x, members.y), name: "front envelope", meta: "envelope", type: members.count > 500 ? fastScatter() : "scatter",
        mode: "lines", line: { color: COLORS[0], width: 1.5, shape: "hv" }, opacity: 0.6, hoverinfo: "skip", showlegend: false },
      { ...members, name: `Pareto front, measured (${members.count})`, type: members.count > 500 ? fastScatter() : "scatter", meta: "front",
        mode: "markers", marker: { color: COLORS[0], size: members.count > 500 ? 7 : 10 } },
    ];
    // predictions are no results: listed in the legend, drawn only when the user clicks it
    if (finetuned.count) traces.push({ ...finetuned, name: `fine-tuned, measured on val (${finetuned.count})`, type: "scatter",
      mode: "markers", meta: "finetuned", marker: { color: FINETUNED_COLOR, size: 10, symbol: "triangle-up", line: { color: "#064e3b", width: 1 } } });
    if (predictedOnly.count) traces.push({ ...predictedOnly, name: `predicted only, never measured (${predictedOnly.count})`,
      type: fastScatter(), mode: "markers", meta: "predicted", visible: "legendonly",
      marker: { color: "#94a3b8", size: 7, symbol: "circle-open" } });
    const mark = (subnet, name, meta, marker) => {
      if (!subnet) return;
      const p = point([subnet], (s) => measuredOf(s) ?? predictedOf(s));
      if (p.count) traces.push({ ...p, name, meta, type: "scatter", mode: "markers", marker });
    };
    mark(this.byId.get(front.best_subnet_id), "best within budget (measured)", "best", { symbol: "star", size: 18, color: "#f59e0b", line: { color: "#78350f", width: 1 } });
    if (this.specialized) mark(this.specialized.subnet, `specialized for ${this.specialized.device}`, "specialized", { symbol: "diamond", size: 15, color: "#10b981", line: { color: "#064e3b", width: 1.5 } });
    if (this.selected) mark(this.byId.get(this.selected), "selected", "selected", { symbol: "circle-open", size: 22, color: "#dc2626", line: { width: 3 } });
    return { traces, cloud, members, finetuned };
  }

  /** One arrow per fine-tuned subnet, from its inherited point to its fine-tuned one (layout
   * annotations, whose coordinates on a log axis are log10 of the value). */
  finetuneArrows(finetuned) {
    const at = this.axis === "latency" ? (x) => x : Math.log10;
    return finetuned.customdata.map((id, i) => {
      const x = at(finetuned.x[i]);
      return { x, y: finetuned.y[i], ax: x, ay: measuredOf(this.byId.get(id)), xref: "x", yref: "y", axref: "x", ayref: "y",
        text: "", showarrow: true, arrowhead: 2, arrowsize: 1.2, arrowwidth: 1.5, arrowcolor: FINETUNED_COLOR, standoff: 5, startstandoff: 4,
        captureevents: false };
    });
  }

  /** The budget lines and their labels; `xs`: the x values drawn (where the lines fall among
   * them picks the side of each label). */
  budgetShapes(xs) {
    const budget = this.front().budget;
    const key = this.axis === "latency" ? "latency_ms" : this.axis === "macs" ? "macs" : null;
    const spec = this.specialized;
    const lines = [];
    if (budget && key && budget[key] != null) lines.push([budget[key], `budget ${budgetText(budget)}`, "#dc2626", "dash"]);
    if (spec && key && spec.budget[key] != null && (key === "macs" || spec.device === this.device)) {
      lines.push([spec.budget[key], `specialize ${budgetText(spec.budget)}`, "#10b981", "dot"]);
    }
    const scale = this.axis === "latency" ? (x) => x : Math.log10; // as the x axis draws them
    const all = xs.concat(lines.map(([x]) => x)).map(scale).filter(Number.isFinite);
    const lo = Math.min(...all);
    const hi = Math.max(...all);
    // Labels hang inside the plot under its top edge, not above it in the margin where the
    // toolbar is; one in the right half of the plot reads leftwards, away from the edge.
    return {
      shapes: lines.map(([x, , color, dash]) => ({ type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1, line: { color, width: 2, dash } })),
      annotations: lines.map(([x, text, color], i) => {
        const leftwards = hi > lo && (scale(x) - lo) / (hi - lo) > 0.5;
        return { x, y: 1, xref: "x", yref: "paper", text, showarrow: false, yanchor: "top", yshift: -4 - 18 * i,
          xanchor: leftwards ? "right" : "left", xshift: leftwards ? -4 : 4, bgcolor: "rgba(255,255,255,0.85)", font: { color, size: 11 } };
      }),
    };
  }

  draw() {
    const Plotly = plotly();
    const front = this.front();
    if (!front || front.members.length === 0) {
      Plotly.purge(this.plotDiv);
      replace(this.plotDiv, notice("empty", `The front on ${this.device} has no members.`, ""));
      return;
    }
    const { traces, cloud, members, finetuned } = this.traces();
    const { shapes, annotations } = this.budgetShapes(cloud.x.concat(members.x));
    const arrows = this.finetuneArrows(finetuned);
    const axis = AXES[this.axis];
    const layout = {
      height: 520, margin: { l: 60, r: 20, t: 30, b: 50 }, hovermode: "closest", uirevision: `${this.device}/${this.axis}`,
      xaxis: { title: { text: this.axis === "latency" ? `latency on ${this.device} (ms; measured where timed, else the table's)` : axis.label }, type: this.axis === "latency" ? "linear" : "log", zeroline: false },
      yaxis: { title: { text: "accuracy on val (%, measured)" }, zeroline: false },
      legend: { orientation: "h", y: -0.15 }, shapes, annotations: annotations.concat(arrows),
    };
    const started = performance.now();
    Plotly.react(this.plotDiv, traces, layout, PLOT_CONFIG);
    const ms = performance.now() - started;
    this.plotDiv.dataset.renderMs = ms.toFixed(1);
    this.plotDiv.dataset.frontPoints = String(members.count);
    this.plotDiv.dataset.cloudPoints = String(cloud.count);
    this.plotDiv.dataset.finetunedPoints = String(finetuned.count);
    const unmeasured = this.subnets.filter((s) => measuredOf(s) == null).length;
    const hidden = this.subnets.length - cloud.count - members.count - unmeasured;
    replace(this.info, `${members.count} measured subnets on the front, ${cloud.count} other measured`,
      unmeasured > 0 ? ` · ${unmeasured} predicted only, not drawn (legend)` : "",
      hidden > 0 ? ` (${hidden} without ${this.axis === "latency" ? `a latency on ${this.device}` : "an accuracy"} not shown)` : "",
      finetuned.count ? ` · ${finetuned.count} fine-tuned (▲, arrow from the inherited accuracy)` : "",
      ` · hypervolume of the measured front ${fmtNum(front.hypervolume, 4)} · budget ${budgetText(front.budget)} · drawn in ${ms.toFixed(0)} ms`);
    if (!this.plotDiv.dataset.bound) {
      this.plotDiv.dataset.bound = "1";
      this.plotDiv.on("plotly_click", (event) => {
        const point = event.points && event.points[0];
        if (point && point.customdata != null) this.select(Number(point.customdata));
      });
    }
    this.drawMembers(front);
  }

  drawMembers(front) {
    const rows = front.members.slice(0, MEMBER_ROWS);
    const tuned = front.members.some((s) => finetunedOf(s) != null); // the column where it says something
    const columns = [
      { title: "#", class: "num", value: (_, i) => String(i) },
      { title: "Subnet", value: (s) => h("button", { type: "button", class: "link", onclick: () => this.select(s.id) }, `#${s.id}`) },
      { title: "Accuracy (measured)", class: "num", value: (s) => `${fmtNum(measuredOf(s))}%` },
      tuned ? { title: "Fine-tuned (measured)", class: "num finetuned", value: (s) => (finetunedOf(s) == null ? "–" : `${fmtNum(finetunedOf(s))}%`) } : null,
      { title: "Predicted", class: "num", value: (s) => (predictedOf(s) == null ? "–" : `${fmtNum(predictedOf(s))}%`) },
      { title: `Latency ms (${this.device})`, class: "num", value: (s) => latencyText(s, this.device) },
      { title: "MACs", class: "num", value: (s) => fmtCount(s.macs) },
      { title: "Params", class: "num", value: (s) => fmtCount(s.params) },
      { title: "", value: (s) => (s.id === front.best_subnet_id ? h("span", { class: "badge best" }, "best") : "") },
    ].filter(Boolean);
    replace(this.members, h("details", {},
      h("summary", {}, `Front members on ${this.device}`, front.members.length > MEMBER_ROWS ? ` (first ${MEMBER_ROWS} of ${front.members.length})` : ""),
      table(columns, rows)));
  }

  async select(subnetId) {
    this.selected = subnetId;
    this.draw();
    replace(this.panel, h("p", { class: "muted" }, `Loading subnet #${subnetId}…`));
    try {
      const subnet = await api(`/subnets/${subnetId}`);
      if (this.selected === subnetId) this.renderPanel(subnet);
    } catch (error) {
      replace(this.panel, errorNotice(`Could not load subnet #${subnetId}`, error));
    }
  }

  renderPanel(subnet) {
    const front = this.front();
    const figures = [
      ["MACs", fmtCount(subnet.macs)], ["Params", fmtCount(subnet.params)], ["Resolution", String(subnet.resolution)],
      ["Predicted accuracy", `${fmtNum(subnet.predicted_accuracy)}%`], ["Measured accuracy", `${fmtNum(subnet.measured_accuracy)}%`],
    ];
    if (finetunedOf(subnet) != null) {
      const f = subnet.finetune || {};
      figures.push(["Fine-tuned accuracy", `${fmtNum(finetunedOf(subnet))}% measured on val`],
        ["Fine-tuning", `${f.epochs ?? "?"} epochs, best of ${f.trials ?? "?"} trials (${f.stopped_early ?? 0} stopped early); holdout ${fmtNum(f.holdout_accuracy)}%`],
        ["Recipe", recipeText(f) || "—"]);
    }
    const latencies = Object.entries(subnet.latencies || {});
    const archRows = Object.entries(subnet.arch || {}).filter(([k]) => k !== "space" && k !== "preset");
    const status = h("div", { class: "download-status", id: "download-status", "aria-live": "polite" });
    const exported = h("p", { class: "muted small", id: "subnet-exports" }, exportsText(subnet));
    const button = (fmt, label) => h("button", { type: "button", id: `download-${fmt}`, onclick: async (event) => {
      const target = event.currentTarget;
      target.disabled = true;
      replace(status, h("span", { class: "muted" }, `Preparing ${label} (a subnet not exported yet is exported now: seconds)…`));
      try {
        const file = await downloadSubnet(subnet.id, fmt, (export_) => replace(status, h("span", { class: "muted" },
          export_.state === "queued"
            ? `Exporting ${label}: queued${export_.position ? ` behind ${export_.position}` : ""}…`
            : `Exporting ${label} from the supernet (seconds)…`)));
        replace(status, notice("ok", `Downloaded ${file.name}`, `${fmtCount(file.size)}B, sha256 checked.`));
      } catch (error) {
        replace(status, errorNotice(`${label} download failed`, error));
      } finally {
        target.disabled = false;
      }
      // the request may have exported a file (even one that failed on the way back): ask again
      try {
        const fresh = await api(`/subnets/${subnet.id}`);
        if (this.selected === subnet.id) replace(exported, exportsText(fresh));
      } catch {
        // the line keeps what it said; the status above says how the download went
      }
    } }, label);
    const hasTunedFile = (subnet.artifacts || []).some((a) => a.format === "finetuned");
    const finetunedButton = hasTunedFile ? h("button", { type: "button", id: "download-finetuned", onclick: async (event) => {
      const target = event.currentTarget;
      target.disabled = true;
      try {
        const file = await downloadFinetuned(subnet.id);
        replace(status, notice("ok", `Downloaded ${file.name}`, `${fmtCount(file.size)}B, sha256 checked.`));
      } catch (error) {
        replace(status, errorNotice("Fine-tuned weights download failed", error));
      } finally {
        target.disabled = false;
      }
    } }, "Fine-tuned weights") : null;
    replace(this.panel,
      h("div", { class: "panel-head" },
        h("h3", {}, `Subnet #${subnet.id}`),
        h("button", { type: "button", class: "link", "aria-label": "close", onclick: () => { this.selected = null; this.draw(); replace(this.panel, h("p", { class: "muted" }, "Click a point to see its subnet.")); } }, "✕")),
      h("p", { class: "mono" }, subnet.arch_id),
      h("p", {},
        subnet.id === (front && front.best_subnet_id) ? h("span", { class: "badge best" }, "best within budget") : null,
        (subnet.fronts || []).map((f) => h("span", { class: "badge" }, `front ${f.device} #${f.position}`))),
      h("dl", { class: "facts compact" }, figures.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      h("h4", {}, "Download"),
      finetunedOf(subnet) != null ? h("p", { class: "muted small" }, "Fine-tuned: its exports hold the fine-tuned weights.") : null,
      h("div", { class: "actions" }, FORMATS.map(([fmt, label]) => button(fmt, label)), finetunedButton),
      exported,
      status,
      h("h4", {}, "Latency (ms)"),
      latencies.length ? table([
        { title: "Device", value: ([d]) => d },
        { title: "Predicted", class: "num", value: ([, l]) => fmtNum(l.predicted_ms, 3) },
        { title: "Measured", class: "num", value: ([, l]) => fmtNum(l.measured_ms, 3) },
      ], latencies) : h("p", { class: "muted" }, "No latency recorded."),
      h("h4", {}, "Architecture"),
      table([
        { title: "Dimension", value: ([k]) => k },
        { title: "Value", value: ([, v]) => (Array.isArray(v)
          ? h("div", { class: "cells" }, v.map((x) => h("span", { class: "cell" }, typeof x === "object" ? JSON.stringify(x) : String(x))))
          : typeof v === "object" ? JSON.stringify(v) : String(v)) },
      ], archRows));
  }

  specializeBox() {
    const box = h("form", { id: "specialize", class: "specialize" }, h("h3", {}, "Specialize"));
    if (this.job.state !== "succeeded") {
      box.append(h("p", { class: "muted" }, "Specialisation needs a succeeded job (it reuses its supernet and predictor)."));
      return box;
    }
    const device = h("select", { id: "specialize-device" }, this.fronts.map((f) => h("option", { value: f.device }, f.device)));
    const kind = h("select", { id: "specialize-kind" }, h("option", { value: "latency_ms" }, "latency (ms)"), h("option", { value: "macs" }, "MACs"));
    const value = h("input", { id: "specialize-value", type: "number", step: "any", min: 0, required: true, placeholder: "budget" });
    const status = h("div", { id: "specialize-status", "aria-live": "polite" });
    const submit = h("button", { type: "submit" }, "Find best subnet");
    api("/devices").then((body) => {
      const known = new Set(this.fronts.map((f) => f.device));
      for (const d of body.data) if (!known.has(d.name)) device.append(h("option", { value: d.name }, d.name));
    }).catch(() => {}); // the job's own devices are enough to offer
    box.append(h("p", { class: "muted small" }, "The most accurate subnet for a device under a new budget, in seconds, without a new search."),
      h("div", { class: "controls" }, h("label", {}, "Device ", device), h("label", {}, "Budget ", kind, value), submit), status);
    box.addEventListener("submit", async (event) => {
      event.preventDefault();
      const amount = Number(value.value);
      if (!(amount > 0)) {
        replace(status, notice("error", "Give a positive budget.", ""));
        return;
      }
      const body = { device: device.value, [kind.value]: kind.value === "macs" ? Math.round(amount) : amount };
      submit.disabled = true;
      replace(status, h("span", { class: "muted" }, "Searching (seconds; the first time on a host device also profiles it)…"));
      try {
        const result = await api(`/jobs/${this.job.id}/specialize`, { method: "POST", body });
        const subnet = result.subnet;
        this.specialized = { subnet, device: result.device, budget: result.budget, seconds: result.seconds };
        if (!this.byId.has(subnet.id)) this.subnets.push(subnet);
        else Object.assign(this.byId.get(subnet.id), subnet);
        this.byId.set(subnet.id, this.byId.get(subnet.id) || subnet);
        const shown = this.fronts.some((f) => f.device === result.device);
        if (shown) this.device = result.device;
        else if (this.axis === "latency") this.axis = "macs"; // no front on that device: place it by MACs
        const deviceSelect = this.area.querySelector("#device-select");
        const axisSelect = this.area.querySelector("#axis-select");
        if (deviceSelect) deviceSelect.value = this.device;
        if (axisSelect) axisSelect.value = this.axis;
        const origin = result.from_job ? "a subnet the job had measured" : "newly found";
        replace(status, notice("ok", `Subnet #${subnet.id}: ${accuracyText(subnet)}, ${latencyText(subnet, result.device)} on ${result.device}`,
          `${origin}, the best of ${result.candidates} measured; found in ${fmtNum(result.seconds, 1)} s; marked ◆ on the plot${shown ? "" : " (by MACs: the job has no front on that device)"}.`));
        this.select(subnet.id);
      } catch (error) {
        replace(status, errorNotice(error.status === 401 ? "A token is needed: enter it above, then try again" : "Specialisation refused", error));
      } finally {
        submit.disabled = false;
      }
    });
    return box;
  }

  qualityContent() {
    const predictor = (this.events || []).find((e) => e.kind === "metrics" && e.stage === "building_predictor" && e.data && e.data.kendall_tau !== undefined);
    const both = this.subnets.filter((s) => s.predicted_accuracy != null && s.measured_accuracy != null);
    const parts = [];
    if (predictor) {
      const d = predictor.data;
      parts.push(h("p", { id: "predictor-summary" }, `Predictor ${d.chosen || d.predictor}: holdout RMSE ${fmtNum(d.rmse)} points, Kendall tau ${fmtNum(d.kendall_tau, 3)}`,
        d.spearman != null ? `, Spearman ${fmtNum(d.spearman, 3)}` : "", ` (${d.num_subnets ?? "?"} measured subnets).`));
    }
    const plot = h("div", { id: "predictor-plot", class: "plot-small" });
    const hv = h("div", { id: "hypervolume" });
    // the searching stage logs, per device, the hypervolume after each share of its measured subnets
    const traces = (this.events || [])
      .filter((e) => e.kind === "metrics" && e.data && Array.isArray(e.data.hypervolume_trace) && e.data.hypervolume_trace.length)
      .map((e) => e.data);
    const hvPlot = h("div", { id: "hypervolume-plot", class: "plot-small" });
    parts.push(h("div", { class: "two-col" }, h("div", {}, h("h3", {}, "Predicted vs measured accuracy"),
      both.length ? plot : notice("empty", "No subnet has both a predicted and a measured accuracy.", this.fronts && this.fronts.length ? "" : "They appear with the results.")), hv));
    if (this.fronts && this.fronts.length) {
      const searchTime = new Map(traces.concat((this.events || []).filter((e) => e.kind === "metrics" && e.data && e.data.search_hypervolume !== undefined)
        .map((e) => e.data)).map((d) => [d.device, d.search_hypervolume]));
      replace(hv, h("h3", {}, "Hypervolume"), table([
        { title: "Device", value: (f) => f.device },
        { title: "Front size", class: "num", value: (f) => String(f.members.length) },
        { title: "Measured", class: "num", value: (f) => fmtNum(f.hypervolume, 4) },
        { title: "Search-time (predicted)", class: "num", value: (f) => fmtNum(searchTime.get(f.device), 4) },
        { title: "Budget", value: (f) => budgetText(f.budget) },
      ], this.fronts), traces.length ? hvPlot : h("p", { class: "muted small" },
        "The final hypervolume of each front; this strategy searched the predictor, so there is no measured order to replay."));
    } else {
      replace(hv, h("h3", {}, "Hypervolume"), h("p", { class: "muted" }, "Known when the search has finished."));
    }
    if (traces.length && this.fronts && this.fronts.length) {
      requestAnimationFrame(() => {
        plotly().react(hvPlot, traces.map((d, i) => ({
          x: d.hypervolume_trace.map((p) => p[0]), y: d.hypervolume_trace.map((p) => p[1]),
          mode: "lines+markers", type: "scatter", name: d.device, line: { color: COLORS[i % COLORS.length] },
          hovertemplate: `${d.device}<br>%{x} measured on holdout<br>hypervolume %{y:.4f}<extra></extra>`,
        })), { height: 260, margin: { l: 55, r: 10, t: 10, b: 45 }, xaxis: { title: { text: "subnets measured on holdout during the search" } },
          yaxis: { title: { text: "search-time hypervolume" } }, legend: { orientation: "h" } }, SMALL_PLOT_CONFIG);
      });
    }
    if (both.length) {
      requestAnimationFrame(() => {
        const lo = Math.min(...both.map((s) => Math.min(s.predicted_accuracy, s.measured_accuracy))) - 1;
        const hi = Math.max(...both.map((s) => Math.max(s.predicted_accuracy, s.measured_accuracy))) + 1;
        plotly().react(plot, [
          { x: [lo, hi], y: [lo, hi], mode: "lines", type: "scatter", name: "predicted = measured", line: { color: "#94a3b8", dash: "dash" }, hoverinfo: "skip" },
          { x: both.map((s) => s.measured_accuracy), y: both.map((s) => s.predicted_accuracy), customdata: both.map((s) => s.id),
            mode: "markers", type: both.length > 500 ? fastScatter() : "scatter", name: `${both.length} subnets`, marker: { color: COLORS[0], size: 7 },
            hovertemplate: "#%{customdata}<br>measured %{x:.2f}%<br>predicted %{y:.2f}%<extra></extra>" },
        ], { height: 300, margin: { l: 50, r: 10, t: 10, b: 45 }, xaxis: { title: { text: "measured (%)" } }, yaxis: { title: { text: "predicted (%)" } }, showlegend: false }, SMALL_PLOT_CONFIG);
      });
    }
    return parts;
  }
}
