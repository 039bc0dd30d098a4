// Jobs page: the list (filter by state, pages, live while jobs run) and the new-job form.
import {
  JOB_STATES, RUNNING_STATES, api, errorNotice, fmtDate, fmtDuration, h, initPage, notice,
  progressBar, replace, stateBadge, table,
} from "./common.js";

const PAGE_SIZE = 20;
const FAST_POLL_MS = 3000; // while a listed job runs
const SLOW_POLL_MS = 15000; // to notice jobs submitted elsewhere

const main = initPage();
const params = new URLSearchParams(location.search);
const view = {
  state: JOB_STATES.includes(params.get("state")) ? params.get("state") : "",
  page: Math.max(1, Number.parseInt(params.get("page"), 10) || 1),
};
let timer = null;

const listArea = h("section", { id: "jobs", "aria-live": "polite" });
const stateSelect = h("select", { id: "state-filter", onchange: () => { view.state = stateSelect.value; view.page = 1; refresh(); } },
  h("option", { value: "" }, "all states"),
  JOB_STATES.map((s) => h("option", { value: s, selected: s === view.state }, s.replace("_", " "))));
const formArea = h("section", { id: "new-job" });

replace(main,
  h("div", { class: "page-head" },
    h("h1", {}, "Jobs"),
    h("label", {}, "State ", stateSelect),
    h("button", { type: "button", id: "new-job-button", onclick: () => openForm() }, "New job")),
  formArea,
  listArea);

function syncUrl() {
  const query = new URLSearchParams();
  if (view.state) query.set("state", view.state);
  if (view.page > 1) query.set("page", String(view.page));
  const search = query.toString();
  history.replaceState(null, "", search ? `?${search}` : location.pathname);
}

async function refresh() {
  clearTimeout(timer);
  syncUrl();
  let running = false;
  try {
    const body = await api("/jobs", {
      params: { state: view.state || undefined, limit: PAGE_SIZE, offset: (view.page - 1) * PAGE_SIZE },
    });
    if (body.count > 0 && body.data.length === 0 && view.page > 1) {
      view.page = Math.ceil(body.count / PAGE_SIZE);
      return refresh();
    }
    running = body.data.some((job) => RUNNING_STATES.includes(job.state));
    renderList(body);
  } catch (error) {
    replace(listArea, errorNotice("Could not load the jobs", error));
  }
  timer = setTimeout(refresh, running ? FAST_POLL_MS : SLOW_POLL_MS);
}

function renderList(body) {
  if (body.count === 0) {
    replace(listArea, view.state
      ? notice("empty", `No ${view.state.replace("_", " ")} jobs.`, "Choose another state, or all states.")
      : notice("empty", "No jobs yet.", "Submit one with “New job”, `nas submit`, or POST /api/v1/jobs."));
    return;
  }
  const pages = Math.ceil(body.count / PAGE_SIZE);
  const columns = [
    { title: "#", class: "num", value: (j) => String(j.id) },
    { title: "Name", value: (j) => h("a", { href: `/jobs/${j.id}` }, j.name) },
    { title: "Space", value: (j) => `${j.space} (${j.preset})` },
    { title: "Dataset", value: (j) => (j.spec && j.spec.dataset ? j.spec.dataset.kind : "—") },
    { title: "State", value: (j) => [stateBadge(j.state), healthMarker(j), j.cancel_requested && j.state !== "cancelled" ? " cancelling" : null] },
    { title: "Progress", class: "wide", value: (j) => progressBar(j.progress, j.state) },
    { title: "Created", value: (j) => fmtDate(j.created_at) },
    { title: "Duration", value: (j) => fmtDuration(j.started_at, j.finished_at) },
  ];
  replace(listArea,
    table(columns, body.data, { rowAttrs: (j) => ({ dataset: { jobId: String(j.id), state: j.state }, class: "job-row" }) }),
    h("nav", { class: "pager", "aria-label": "pages" },
      h("button", { type: "button", disabled: view.page <= 1, onclick: () => { view.page -= 1; refresh(); } }, "← newer"),
      h("span", {}, `page ${view.page} of ${pages} · ${body.count} job${body.count === 1 ? "" : "s"}`),
      h("button", { type: "button", disabled: view.page >= pages, onclick: () => { view.page += 1; refresh(); } }, "older →")));
}

// --- the new-job form ----------------------------------------------------------------------

const DATASETS = ["digits", "fashion_mnist", "cifar10", "cifar100", "idx", "imagefolder", "synthetic"];
const STRATEGIES = ["linas", "evolution", "nsga2", "optuna_nsga2", "random"];
const SAMPLERS = ["sandwich", "uniform", "complexity_aware", "attentive", "fair", "fair_distill"];

async function openForm() {
  if (formArea.firstChild) {
    formArea.replaceChildren();
    return;
  }
  replace(formArea, h("p", { class: "muted" }, "Loading spaces and devices…"));
  let spaces;
  let devices;
  try {
    [spaces, devices] = await Promise.all([api("/spaces"), api("/devices")]);
  } catch (error) {
    replace(formArea, errorNotice("Could not load spaces and devices", error));
    return;
  }
  replace(formArea, buildForm(spaces.data, devices.data));
}

/** A labelled input; `hint` (what a placeholder was too narrow to say) goes under it. */
function field(label, input, name, hint) {
  return h("div", { class: "field", dataset: { field: name } },
    h("label", { for: input.id }, label), input, hint ? h("div", { class: "muted small" }, hint) : null,
    h("div", { class: "field-error" }));
}

function buildForm(spaces, devices) {
  const name = h("input", { id: "f-name", required: true, maxlength: 100, value: "digits search" });
  const space = h("select", { id: "f-space" }, spaces.map((s) => h("option", { value: s.name }, s.name)));
  const preset = h("select", { id: "f-preset" });
  const fillPresets = () => {
    const chosen = spaces.find((s) => s.name === space.value);
    replace(preset, Object.keys(chosen ? chosen.presets : {}).map((p) => h("option", { value: p, selected: p === "tiny" }, p)));
  };
  space.addEventListener("change", fillPresets);
  fillPresets();
  const dataset = h("select", { id: "f-dataset" }, DATASETS.map((d) => h("option", { value: d }, d)));
  const root = h("input", { id: "f-root", placeholder: "a path under NAS_DATA_ROOT" });
  const epochs = h("input", { id: "f-epochs", type: "number", min: 1, max: 1000, value: 8 });
  const sampler = h("select", { id: "f-sampler" }, SAMPLERS.map((s) => h("option", { value: s }, s)));
  const strategy = h("select", { id: "f-strategy" }, STRATEGIES.map((s) => h("option", { value: s }, s)));
  const deviceRows = devices.map((d, i) => {
    const check = h("input", { type: "checkbox", id: `f-dev-${i}`, value: d.name, checked: d.name === "host-cpu-onnxruntime" });
    const budget = h("input", { type: "number", class: "budget", step: "any", min: 0, placeholder: "latency budget, ms (optional)", "aria-label": `latency budget for ${d.name}` });
    return { name: d.name, check, budget, node: h("div", { class: "device-choice" }, check, h("label", { for: check.id }, d.name), budget) };
  });
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const form = h("form", { id: "job-form", class: "card", novalidate: true },
    h("h2", {}, "New job"),
    h("div", { class: "form-grid" },
      field("Name", name, "name"), field("Search space", space, "space"), field("Preset", preset, "preset"),
      field("Dataset", dataset, "dataset.kind"), field("Dataset root", root, "dataset.root", "needed by cifar10, cifar100, idx and imagefolder; optional for fashion_mnist"),
      field("Epochs", epochs, "training.epochs"), field("Sampler", sampler, "training.sampler"),
      field("Search strategy", strategy, "search.strategy")),
    h("fieldset", { class: "field", dataset: { field: "devices" } }, h("legend", {}, "Devices (a Pareto front each)"),
      deviceRows.map((d) => d.node), h("div", { class: "field-error" })),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Submit job"),
      h("button", { type: "button", class: "link", onclick: () => formArea.replaceChildren() }, "cancel")),
    status);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const node of form.querySelectorAll(".field-error")) node.textContent = "";
    const chosen = deviceRows.filter((d) => d.check.checked);
    const errors = {};
    if (!name.value.trim()) errors.name = "a name is required";
    if (!(Number(epochs.value) >= 1)) errors["training.epochs"] = "at least 1";
    if (chosen.length === 0) errors.devices = "choose at least one device";
    const budgets = {};
    for (const d of chosen) {
      if (d.budget.value === "") continue;
      const ms = Number(d.budget.value);
      if (!(ms > 0)) errors.devices = `${d.name}: the budget must be a positive number of ms`;
      else budgets[d.name] = { latency_ms: ms };
    }
    if (Object.keys(errors).length) {
      showErrors(form, errors);
      replace(status, notice("error", "Check the fields marked in red."));
      return;
    }
    const spec = {
      name: name.value.trim(),
      space: space.value,
      preset: preset.value,
      dataset: { kind: dataset.value, ...(root.value.trim() ? { root: root.value.trim() } : {}) },
      training: { epochs: Number(epochs.value), sampler: sampler.value },
      search: { strategy: strategy.value, budgets },
      devices: chosen.map((d) => d.name),
    };
    replace(status, h("span", { class: "muted" }, "Submitting…"));
    try {
      const job = await api("/jobs", { method: "POST", body: spec });
      replace(status, notice("ok", `Job ${job.id} queued.`, null, h("a", { href: `/jobs/${job.id}` }, "Open it")));
      refresh();
    } catch (error) {
      showErrors(form, error.fields || {});
      replace(status, errorNotice(error.status === 401 ? "A token is needed to submit: enter it above, then submit again" : "The service refused the job", error));
    }
  });
  return form;
}

/** Marks each field the service (or the form) named; unknown fields go to the nearest parent. */
function showErrors(form, errors) {
  for (const [name, message] of Object.entries(errors)) {
    let key = name;
    let box = null;
    while (key && !(box = form.querySelector(`[data-field="${CSS.escape(key)}"] .field-error`))) {
      key = key.includes(".") ? key.slice(0, key.lastIndexOf(".")) : "";
    }
    if (box) box.textContent = key === name ? message : `${name}: ${message}`;
  }
}

document.addEventListener("nas-token", refresh);
refresh();

// A job the health gates warned about: a marker beside its state, the checks in its tooltip.
function healthMarker(job) {
  const warnings = job.warnings || [];
  if (!warnings.length) return null;
  const text = `⚠ ${warnings.length} warning${warnings.length === 1 ? "" : "s"}`;
  return h("span", { class: "badge health-warning", title: warnings.map((c) => c.message).join("\n") }, text);
}
