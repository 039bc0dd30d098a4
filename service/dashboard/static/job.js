// Job page: header, stage timeline, training curves and log, then the results (front.js).
// Polls the job and its log while it runs; loads the results once the search has written them.
import {
  RUNNING_STATES, SMALL_PLOT_CONFIG, api, errorNotice, fmtDate, fmtDuration, fmtNum, h, initPage,
  notice, plotly, progressBar, replace, stateBadge, budgetText,
} from "./common.js";
import { Results } from "./front.js";

const POLL_MS = 3000;
// workers.spec.STAGE_ORDER; a job whose spec skips one (finetune: null) shows it as skipped
const STAGES = ["training", "building_predictor", "searching", "finetuning", "exporting"];

const main = initPage();
const match = location.pathname.match(/^\/jobs\/(\d{1,10})\/?$/);
const jobId = match ? Number(match[1]) : null;

const headArea = h("section", { id: "job-head" });
const timelineArea = h("section", { id: "timeline", class: "card" });
const curvesArea = h("section", { id: "curves", class: "card" });
const resultsArea = h("section", { id: "results" });
const logArea = h("section", { id: "log", class: "card" });

const events = [];
let cursor = 0;
let job = null;
let results = null;
let timer = null;

async function loadLogs() {
  // every line after the cursor, a page at a time (a long job has many)
  for (let page = 0; page < 50; page += 1) {
    const body = await api(`/jobs/${jobId}/logs`, { params: { after: cursor, limit: 1000 } });
    for (const event of body.data) {
      // a resumed attempt replaces an epoch's data point: keep the newest per epoch
      const epoch = trainingEpoch(event);
      if (epoch !== null) {
        const old = events.findIndex((e) => trainingEpoch(e) === epoch);
        if (old >= 0) events.splice(old, 1);
      }
      events.push(event);
    }
    cursor = body.next_after;
    if (body.data.length < 1000) return;
  }
}

function trainingEpoch(event) {
  return event.kind === "metrics" && event.stage === "training" && event.data && event.data.kind === "epoch"
    ? event.data.epoch : null;
}

async function load() {
  clearTimeout(timer);
  if (jobId === null) {
    replace(main, notice("error", "Job not found.", `“${location.pathname}” names no job: job pages are /jobs/<number>.`, h("a", { href: "/" }, "All jobs")));
    return;
  }
  try {
    job = await api(`/jobs/${jobId}`);
    await loadLogs();
  } catch (error) {
    if (job === null) {
      replace(main, error.status === 404
        ? notice("error", `Job ${jobId} not found.`, error.message, h("a", { href: "/" }, "All jobs"))
        : errorNotice(`Could not load job ${jobId}`, error));
      if (error.status !== 404 && error.status !== 401) timer = setTimeout(load, POLL_MS * 3);
      return;
    }
    // a running job keeps its last view; the next poll tries again
    replace(headArea.querySelector(".poll-status") || headArea, errorNotice("Live update failed", error));
    timer = setTimeout(load, POLL_MS * 3);
    return;
  }
  if (!main.contains(headArea)) {
    replace(main, headArea, timelineArea, resultsArea, curvesArea, logArea);
    results = new Results(resultsArea, job);
  }
  document.title = `${job.name} · nas-service`;
  renderHead();
  renderTimeline();
  renderCurves();
  renderLog();
  await results.update(job, events);
  if (RUNNING_STATES.includes(job.state)) timer = setTimeout(load, POLL_MS);
}

function renderHead() {
  const spec = job.spec || {};
  const search = spec.search || {};
  const facts = [
    ["Space", `${job.space} (${job.preset})`],
    ["Dataset", spec.dataset ? spec.dataset.kind : "—"],
    ["Devices", (spec.devices || []).map((d) => `${d}: ${budgetText(search.budgets && search.budgets[d])}`).join(" · ") || "—"],
    ["Strategy", search.strategy || "—"],
    ["Fine-tuning", finetuneText(spec)],
    ["Epochs", spec.training ? String(spec.training.epochs) : "—"],
    ["Created", fmtDate(job.created_at)],
    ["Duration", fmtDuration(job.started_at, job.finished_at)],
    ["Attempt", String(job.attempt)],
    ["Owner", job.owner],
  ];
  replace(headArea,
    h("div", { class: "page-head" },
      h("h1", {}, h("span", { class: "muted" }, `#${job.id} `), job.name),
      stateBadge(job.state),
      h("div", { class: "head-progress" }, progressBar(job.progress, job.state))),
    h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    job.state === "failed" ? notice("error", "This job failed.", job.error || "no error was recorded") : null,
    healthBanner(),
    job.state === "cancelled" ? notice("warn", "This job was cancelled.", "The stages it finished kept their files; it has no results unless its search had finished.") : null,
    job.cancel_requested && job.state !== "cancelled" ? notice("warn", "Cancelling…", "The job stops within seconds.") : null,
    job.state === "queued" ? notice("info", "Queued.", "The job starts when a worker is free.") : null,
    h("div", { class: "poll-status" }));
}

/** What the finetuning stage was asked for: "3 subnets per device, 2 recipes each, ≤ 2 epochs"
 * or "off" (finetune: null). A spec stored before the stage has no field: its defaults. */
function finetuneText(spec) {
  if (!("finetune" in spec)) return "—";
  const f = spec.finetune;
  if (f === null) return "off";
  return `${f.subnets} subnet${f.subnets === 1 ? "" : "s"} per device, ${f.samples} recipe${f.samples === 1 ? "" : "s"} each, ≤ ${f.max_epochs} epoch${f.max_epochs === 1 ? "" : "s"}${f.distill ? ", distilled" : ""}`;
}

// The health gates' warnings (a supernet near chance, a predictor that cannot rank): a job
// that succeeded with warnings may not be worth using, so they stand above everything else.
function healthBanner() {
  const warnings = job.warnings || [];
  if (!warnings.length) return null;
  const figure = (c) => (c.value === null ? "undefined" : `${fmtNum(c.value, 3)}${c.unit === "%" ? "%" : ""}`);
  const bound = (c) => `${c.bound === "min" ? "≥" : "≤"} ${fmtNum(c.threshold, 3)}${c.unit === "%" ? "%" : ""}`;
  const title = `${job.state === "succeeded" ? "Succeeded" : job.state.replace("_", " ")} with ${warnings.length} health warning${warnings.length === 1 ? "" : "s"}.`;
  return h("div", { id: "health-warnings" },
    notice("warn", title, "A health check missed its threshold; the job went on (health.on_*_failure: warn).",
      h("ul", { class: "health-list" }, warnings.map((c) =>
        h("li", { dataset: { check: c.check } },
          h("strong", {}, c.check.replaceAll("_", " ")), ` (${c.gate}): measured ${figure(c)}, needs ${bound(c)}. `,
          h("span", {}, c.message), c.advice ? h("p", { class: "advice" }, `What to change: ${c.advice}`) : null)))));
}

// One bar per stage, as long as the percentage written beside it (a bar for elapsed time read
// as "done" next to "0%"); when each stage ran is in the bar's tooltip and its duration.
function renderTimeline() {
  const byName = Object.fromEntries((job.stages || []).map((s) => [s.name, s]));
  const finished = ["succeeded", "failed", "cancelled"].includes(job.state);
  const rows = STAGES.map((name) => {
    const stage = byName[name];
    const off = name === "finetuning" && (job.spec || {}).finetune === null; // the spec turned it off
    const state = stage ? stage.state : finished || off ? "skipped" : "pending"; // skipped: no record of a run
    const percent = stage ? Math.max(0, Math.min(100, Number(stage.progress) || 0)) : 0;
    const track = stage
      ? h("div", { class: "tl-track", role: "progressbar", "aria-valuenow": percent.toFixed(0), "aria-valuemin": "0", "aria-valuemax": "100",
        title: `${fmtDate(stage.started_at)} → ${stage.finished_at ? fmtDate(stage.finished_at) : "now"}` },
      h("div", { class: `tl-bar state-${state}`, style: { width: `${percent}%` } }))
      : h("div", { class: "tl-track" });
    return h("div", { class: "tl-row", dataset: { stage: name, state } },
      h("div", { class: "tl-name" }, name.replace("_", " ")),
      track,
      h("div", { class: "tl-info" }, stateBadge(state), " ",
        stage ? `${fmtNum(percent, 0)}% · ${fmtDuration(stage.started_at, stage.finished_at)}` : ""));
  });
  replace(timelineArea, h("h2", {}, "Stages"), rows);
}

let curvesDrawn = 0;

function renderCurves() {
  const epochs = events.map((e) => (trainingEpoch(e) === null ? null : e.data)).filter(Boolean).sort((a, b) => a.epoch - b.epoch);
  if (epochs.length === 0) {
    curvesDrawn = 0;
    const text = job.state === "queued" || job.state === "training"
      ? "Curves appear after the first epoch." : "This job recorded no training epochs.";
    replace(curvesArea, h("h2", {}, "Training"), notice("empty", "No training epochs yet.", text));
    return;
  }
  if (epochs.length === curvesDrawn) return; // nothing new since the last poll
  curvesDrawn = epochs.length;
  const Plotly = plotly();
  const x = epochs.map((e) => e.epoch);
  const phases = epochs.map((e) => e.phase);
  const lossKeys = [...new Set(epochs.flatMap((e) => Object.keys(e.losses || {})))];
  const lossPlot = h("div", { id: "loss-plot", class: "plot-small" });
  const accPlot = h("div", { id: "accuracy-plot", class: "plot-small" });
  replace(curvesArea, h("h2", {}, "Training"), h("div", { class: "two-col" }, lossPlot, accPlot));
  const layout = (title, y) => ({
    title: { text: title, font: { size: 14 }, x: 0.02, xanchor: "left" }, margin: { l: 50, r: 10, t: 40, b: 40 }, height: 260,
    xaxis: { title: { text: "epoch" }, dtick: epochs.length <= 20 ? 1 : undefined }, yaxis: { title: { text: y } },
    legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom" },
  });
  Plotly.react(lossPlot, lossKeys.map((key) => ({
    x, y: epochs.map((e) => (e.losses || {})[key] ?? null), name: `${key} subnet`, mode: "lines+markers", type: "scatter",
    text: phases, hovertemplate: `epoch %{x} (%{text})<br>${key} loss %{y:.4f}<extra></extra>`,
  })), layout("Loss", "loss"), SMALL_PLOT_CONFIG);
  Plotly.react(accPlot, [["max_val_acc", "max subnet"], ["min_val_acc", "min subnet"]].map(([key, name]) => ({
    x, y: epochs.map((e) => e[key] ?? null), name, mode: "lines+markers", type: "scatter",
    text: phases, hovertemplate: `epoch %{x} (%{text})<br>${name} %{y:.2f}%<extra></extra>`,
  })), layout("Val accuracy", "%"), SMALL_PLOT_CONFIG);
}

function renderLog() {
  const lines = events.filter((e) => e.kind !== "metrics" || trainingEpoch(e) === null).slice(-200);
  replace(logArea, h("details", { open: job.state === "failed" },
    h("summary", {}, h("h2", { class: "inline" }, "Log"), ` ${events.length} line${events.length === 1 ? "" : "s"}`),
    lines.length === 0 ? h("p", { class: "muted" }, "Nothing logged yet.")
      : h("ol", { class: "log" }, lines.map((e) => h("li", { class: `log-${e.level}` },
        h("time", {}, fmtDate(e.created_at)), " ", h("span", { class: "log-kind" }, e.kind), " ", e.message)))));
}

document.addEventListener("nas-token", load);
load();
