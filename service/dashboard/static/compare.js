// Compare: the fronts of two jobs, or of two devices of one job, on one plot.
// The choice lives in the URL (?a=JOB&da=DEVICE&b=JOB&db=DEVICE&x=latency), so it can be shared.
import {
  COLORS, PLOT_CONFIG, fastScatter, accuracyOf, api, budgetText, errorNotice, fmtNum, h, initPage,
  notice, plotly, replace,
} from "./common.js";
import { envelope, hoverText, xOf } from "./front.js";

const main = initPage();
const params = new URLSearchParams(location.search);
const sides = [
  { key: "a", job: Number(params.get("a")) || null, device: params.get("da") || "" },
  { key: "b", job: Number(params.get("b")) || null, device: params.get("db") || "" },
];
let axis = ["latency", "macs", "params"].includes(params.get("x")) ? params.get("x") : "latency";
const frontsOf = new Map(); // job id -> fronts
/** Latencies spanning more than this factor (a desktop CPU beside a small board) go on a log
 * axis, where the faster front is not squeezed against zero; closer ones stay linear. */
const LOG_SPAN = 10;

const controls = h("form", { id: "compare-form", class: "card controls" });
const plotArea = h("section", { class: "card" });

async function start() {
  let jobs;
  try {
    jobs = (await api("/jobs", { params: { state: "succeeded", limit: 500 } })).data;
  } catch (error) {
    replace(main, h("h1", {}, "Compare fronts"), errorNotice("Could not load the jobs", error));
    return;
  }
  if (jobs.length === 0) {
    replace(main, h("h1", {}, "Compare fronts"), notice("empty", "No finished job to compare.", "Fronts appear when a job has succeeded.", h("a", { href: "/" }, "All jobs")));
    return;
  }
  for (const side of sides) if (!side.job) side.job = jobs[0].id;
  replace(main, h("h1", {}, "Compare fronts"), h("p", { class: "muted" }, "Two jobs, or two devices of one job, on one plot."), controls, plotArea);
  const jobOptions = (side) => jobs.map((j) => h("option", { value: j.id, selected: j.id === side.job }, `#${j.id} ${j.name} (${j.space})`));
  const pickers = sides.map((side, i) => {
    const jobSelect = h("select", { id: `job-${side.key}` }, jobOptions(side));
    if (!jobs.some((j) => j.id === side.job)) jobSelect.prepend(h("option", { value: side.job, selected: true }, `#${side.job}`));
    const deviceSelect = h("select", { id: `device-${side.key}` });
    jobSelect.addEventListener("change", async () => { side.job = Number(jobSelect.value); side.device = ""; await fillDevices(side, deviceSelect, i); draw(); });
    deviceSelect.addEventListener("change", () => { side.device = deviceSelect.value; draw(); });
    return { side, jobSelect, deviceSelect, i };
  });
  const axisSelect = h("select", { id: "compare-axis", onchange: () => { axis = axisSelect.value; draw(); } },
    [["latency", "Latency"], ["macs", "MACs"], ["params", "Params"]].map(([v, t]) => h("option", { value: v, selected: v === axis }, t)));
  replace(controls, pickers.map((p) => h("fieldset", {}, h("legend", { style: { color: COLORS[p.i] } }, p.i === 0 ? "Front A" : "Front B"),
    h("label", {}, "Job ", p.jobSelect), h("label", {}, "Device ", p.deviceSelect))), h("label", {}, "x axis ", axisSelect));
  await Promise.all(pickers.map((p) => fillDevices(p.side, p.deviceSelect, p.i)));
  draw();
}

async function fronts(jobId) {
  if (!frontsOf.has(jobId)) frontsOf.set(jobId, api(`/jobs/${jobId}/fronts`).then((b) => b.data));
  return frontsOf.get(jobId);
}

async function fillDevices(side, select, index) {
  replace(select);
  let list = [];
  try {
    list = await fronts(side.job);
  } catch (error) {
    frontsOf.delete(side.job);
    side.error = error;
    return;
  }
  side.error = null;
  const names = list.map((f) => f.device);
  if (!names.includes(side.device)) {
    // B defaults to the other device of the same job, so one click compares two devices
    const other = index === 1 && sides[0].job === side.job ? names.find((n) => n !== sides[0].device) : null;
    side.device = other || names[0] || "";
  }
  replace(select, names.map((n) => h("option", { value: n, selected: n === side.device }, n)));
}

async function draw() {
  const query = new URLSearchParams({ a: sides[0].job, da: sides[0].device, b: sides[1].job, db: sides[1].device, x: axis });
  history.replaceState(null, "", `?${query}`);
  const problems = [];
  const traces = [];
  for (const [i, side] of sides.entries()) {
    const label = `job #${side.job} on ${side.device || "?"}`;
    if (side.error) {
      problems.push(errorNotice(`Front ${i ? "B" : "A"}: could not load job #${side.job}`, side.error));
      continue;
    }
    const list = await fronts(side.job).catch(() => []);
    const front = list.find((f) => f.device === side.device);
    if (!front) {
      problems.push(notice("empty", `Front ${i ? "B" : "A"}: job #${side.job} has no Pareto front${side.device ? ` on ${side.device}` : ""}.`, ""));
      continue;
    }
    const members = front.members.filter((s) => xOf(s, axis, side.device) != null && accuracyOf(s) != null);
    const xs = members.map((s) => xOf(s, axis, side.device));
    const fast = members.length > 500 ? fastScatter() : "scatter";
    traces.push({ ...envelope(xs, members.map(accuracyOf)), type: fast, mode: "lines", hoverinfo: "skip", showlegend: false,
      line: { color: COLORS[i], shape: "hv", width: 1.5, dash: i ? "dot" : "solid" }, opacity: 0.7 });
    traces.push({
      x: members.map((s) => xOf(s, axis, side.device)), y: members.map(accuracyOf), customdata: members.map((s) => s.id),
      hovertext: members.map((s) => hoverText(s, side.device)), hovertemplate: "%{hovertext}<extra></extra>",
      name: `${i ? "B" : "A"}: ${label} (${members.length}, hv ${fmtNum(front.hypervolume, 3)}, ${budgetText(front.budget)})`,
      type: fast, mode: "markers", marker: { color: COLORS[i], size: 8, symbol: i ? "square" : "circle" },
    });
  }
  const plot = h("div", { id: "compare-plot", class: "plot-main" });
  replace(plotArea, problems, traces.length ? plot : null);
  if (!traces.length) return;
  const latencies = traces.filter((t) => t.mode === "markers").flatMap((t) => t.x).filter((x) => x > 0);
  const log = axis !== "latency" || Math.max(...latencies) > LOG_SPAN * Math.min(...latencies);
  const title = axis === "latency" ? `latency on each front's device (ms${log ? ", log scale" : ""})` : axis;
  plotly().react(plot, traces, {
    height: 540, margin: { l: 60, r: 20, t: 20, b: 50 }, hovermode: "closest",
    xaxis: { title: { text: title }, type: log ? "log" : "linear" },
    yaxis: { title: { text: "accuracy (%)" } }, legend: { orientation: "h", y: -0.15 },
  }, PLOT_CONFIG);
  plot.dataset.fronts = String(traces.length / 2);
}

document.addEventListener("nas-token", start);
start();
