// Shared by every page: REST calls (with the bearer token the user typed), DOM building
// (text only: nothing from the API is ever parsed as HTML), formatting and the token box.

export const API = "/api/v1";
const TOKEN_KEY = "nas-token";
export const RUNNING_STATES = ["queued", "training", "building_predictor", "searching", "finetuning", "exporting"];
export const JOB_STATES = [...RUNNING_STATES, "succeeded", "failed", "cancelled"];

export class ApiError extends Error {
  constructor(status, message, fields = {}) {
    super(message);
    this.status = status;
    this.fields = fields; // dotted field -> message, from a 422
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  renderTokenBox();
}

function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** The error body's message: `message` (422), else `detail` when it is a string. */
async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's page): the status line says enough
  }
  const fields = {};
  if (body && Array.isArray(body.detail)) {
    for (const item of body.detail) fields[item.field] = item.msg;
  }
  const message =
    (body && (body.message || (typeof body.detail === "string" ? body.detail : null))) ||
    `${response.status} ${response.statusText}`;
  if (response.status === 401) showTokenPrompt(message);
  return new ApiError(response.status, message, fields);
}

/** fetch() against the API; JSON in and out; throws ApiError with the service's message. */
export async function api(path, { method = "GET", body, params } = {}) {
  const url = new URL(API + path, location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of [].concat(value)) url.searchParams.append(key, item);
  }
  const headers = { Accept: "application/json", ...authHeaders() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, `the service did not answer (${error.message})`);
  }
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}

/** A file from the API saved by the browser; its sha256 is checked where the browser can. */
export async function download(path, fallbackName) {
  let response;
  try {
    response = await fetch(API + path, { headers: authHeaders() });
  } catch (error) {
    throw new ApiError(0, `the service did not answer (${error.message})`);
  }
  if (!response.ok) throw await errorOf(response);
  const blob = await response.blob();
  const expected = response.headers.get("X-Checksum-SHA256");
  if (expected && globalThis.crypto && crypto.subtle) {
    const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
    const actual = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    if (actual !== expected) throw new ApiError(0, "the download was corrupted (sha256 differs)");
  }
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = disposition.match(/filename="?([^";]+)"?/);
  const link = h("a", { href: URL.createObjectURL(blob), download: match ? match[1] : fallbackName });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  return { name: link.download, size: blob.size };
}

/** Every page of a paginated list (`data`, `count`), fetched `concurrency` pages at a time. */
export async function fetchAll(path, params = {}, { pageSize = 500, concurrency = 4 } = {}) {
  const first = await api(path, { params: { ...params, limit: pageSize, offset: 0 } });
  const pages = [];
  for (let offset = pageSize; offset < first.count; offset += pageSize) pages.push(offset);
  const rest = [];
  for (let i = 0; i < pages.length; i += concurrency) {
    const batch = pages.slice(i, i + concurrency).map((offset) =>
      api(path, { params: { ...params, limit: pageSize, offset } }),
    );
    rest.push(...(await Promise.all(batch)));
  }
  return [first, ...rest].flatMap((page) => page.data);
}

// --- DOM -------------------------------------------------------------------------------------

/** An element: attributes (`class`, `on*` handlers, booleans) and children (text or nodes). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      node.className = value;
    } else if (key === "style" && typeof value === "object") {
      Object.assign(node.style, value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** A clear state instead of an empty area: a title, a sentence, optional extra nodes. */
export function notice(kind, title, text, ...extra) {
  return h("div", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" },
    h("strong", {}, title), text ? h("p", {}, text) : null, ...extra);
}

export function errorNotice(title, error) {
  return notice("error", title, error instanceof Error ? error.message : String(error));
}

export function table(columns, rows, { rowAttrs } = {}) {
  return h("table", { class: "grid" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class }, c.title)))),
    h("tbody", {}, rows.map((row, i) =>
      h("tr", rowAttrs ? rowAttrs(row, i) : {},
        columns.map((c) => h("td", { class: c.class }, c.value(row, i)))))));
}

export function stateBadge(state) {
  return h("span", { class: `badge state-${state}` }, state.replace("_", " "));
}

export function progressBar(percent, state) {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  return h("div", { class: `progress state-${state}`, role: "progressbar", "aria-valuenow": value.toFixed(0), "aria-valuemin": "0", "aria-valuemax": "100", title: `${value.toFixed(1)}%` },
    h("div", { class: "progress-fill", style: { width: `${value}%` } }),
    h("span", { class: "progress-text" }, `${value.toFixed(0)}%`));
}

// --- formatting ------------------------------------------------------------------------------

export function fmtDate(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function fmtDuration(startIso, endIso) {
  if (!startIso) return "—";
  const end = endIso ? new Date(endIso) : new Date();
  let seconds = Math.max(0, Math.round((end - new Date(startIso)) / 1000));
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  seconds %= 60;
  if (hours) return `${hours} h ${minutes} min`;
  if (minutes) return `${minutes} min ${seconds} s`;
  return `${seconds} s`;
}

export function fmtCount(n) {
  if (n === null || n === undefined) return "—";
  const abs = Math.abs(n);
  if (abs >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (abs >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (abs >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return String(n);
}

export function fmtNum(x, digits = 2, unit = "") {
  return x === null || x === undefined || Number.isNaN(x) ? "—" : `${Number(x).toFixed(digits)}${unit}`;
}

/** Accuracy as the API ranks it: measured where known, else predicted. */
export function accuracyOf(subnet) {
  return subnet.measured_accuracy ?? subnet.predicted_accuracy ?? null;
}

export function latencyOf(subnet, device) {
  const latency = subnet.latencies && subnet.latencies[device];
  return latency ? latency.measured_ms ?? latency.predicted_ms ?? null : null;
}

/** One line per arch dimension, long lists shortened: enough to tell subnets apart. */
export function archSummary(arch, width = 48) {
  return Object.entries(arch || {})
    .filter(([key]) => key !== "space" && key !== "preset")
    .map(([key, value]) => {
      let text = Array.isArray(value) ? value.join(",") : JSON.stringify(value);
      if (text.length > width) text = `${text.slice(0, width - 1)}…`;
      return `${key}: ${text}`;
    });
}

export function budgetText(budget) {
  if (!budget) return "no budget";
  if (budget.latency_ms !== undefined) return `≤ ${budget.latency_ms} ms`;
  if (budget.macs !== undefined) return `≤ ${fmtCount(budget.macs)} MACs`;
  return JSON.stringify(budget);
}

// --- page frame ------------------------------------------------------------------------------

function renderTokenBox() {
  const box = document.getElementById("token-box");
  if (!box) return;
  const token = getToken();
  replace(box, token
    ? [h("span", { class: "muted" }, "token set"),
       h("button", { type: "button", class: "link", onclick: () => setToken("") }, "forget")]
    : h("button", { type: "button", class: "link", onclick: () => showTokenPrompt() }, "set token"));
}

/** Ask for a bearer token (kept in sessionStorage: gone when the tab closes). */
export function showTokenPrompt(reason) {
  const banner = document.getElementById("banner");
  if (!banner || banner.querySelector("#token-input")) return;
  const input = h("input", { id: "token-input", type: "password", autocomplete: "off", placeholder: "bearer token", size: 32 });
  const form = h("form", { class: "token-form", onsubmit: (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    banner.hidden = true;
    banner.replaceChildren();
    document.dispatchEvent(new CustomEvent("nas-token"));
  } },
  h("strong", {}, reason ? `${reason}. ` : "This service may require a token. "),
  h("label", { for: "token-input" }, "Token: "), input,
  h("button", { type: "submit" }, "Use token"),
  h("button", { type: "button", class: "link", onclick: () => { banner.hidden = true; banner.replaceChildren(); } }, "close"));
  replace(banner, form);
  banner.hidden = false;
  input.focus();
}

export function initPage() {
  const page = document.body.dataset.page;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === page || (page === "job" && link.dataset.nav === "jobs")) {
      link.setAttribute("aria-current", "page");
    }
  }
  renderTokenBox();
  return document.getElementById("main");
}

/** Plotly, or a clear message where the bundle did not load. */
export function plotly() {
  if (!globalThis.Plotly) throw new Error("the plotting library did not load (/vendor/plotly)");
  return globalThis.Plotly;
}

let scatterType = null;

/** scattergl where the browser has WebGL (thousands of points), SVG scatter otherwise; asked
 * once, and only by pages that plot (a probe context costs a console warning on some hosts). */
export function fastScatter() {
  if (scatterType === null) {
    try {
      const canvas = document.createElement("canvas");
      scatterType = canvas.getContext("webgl") || canvas.getContext("experimental-webgl") ? "scattergl" : "scatter";
    } catch {
      scatterType = "scatter";
    }
  }
  return scatterType;
}

export const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
export const SMALL_PLOT_CONFIG = { displaylogo: false, responsive: true, displayModeBar: false };

export const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2"];
