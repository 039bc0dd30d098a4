// Devices: built-in and registered devices, their latency tables, and each table's
// calibration error (the whole-network fit it was uploaded with).
import { api, errorNotice, fmtCount, fmtDate, fmtNum, h, initPage, notice, replace, table } from "./common.js";

const main = initPage();

async function start() {
  let devices;
  try {
    devices = (await api("/devices")).data;
  } catch (error) {
    replace(main, h("h1", {}, "Devices"), errorNotice("Could not load the devices", error));
    return;
  }
  const registered = devices.filter((d) => !d.builtin);
  replace(main,
    h("h1", {}, "Devices"),
    h("p", { class: "muted" }, "Latency is predicted from a device's lookup table (see docs/hardware.md). Register a device with ",
      h("code", {}, "nas device profile"), " then ", h("code", {}, "nas device upload"), "."),
    devices.map((device) => deviceCard(device)),
    registered.length ? null : notice("empty", "No registered devices.", "Only the built-in host devices; their tables are profiled on this host when a job needs them."));
}

function deviceCard(device) {
  const facts = [
    ["Runtime", device.runtime], ["Accelerator", device.accelerator], ["Hardware", device.hardware || "—"],
    ["Threads", String(device.threads)], ["Batch", String(device.batch_size)], ["Dtype", device.dtype],
    ["Registered", device.builtin ? "built in" : fmtDate(device.created_at)],
  ];
  const tables = h("div", { class: "device-tables" });
  const card = h("section", { class: "card device", dataset: { device: device.name } },
    h("h2", { class: "device-title" }, device.name, device.builtin ? h("span", { class: "badge" }, "built in") : null),
    h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    tables);
  if (device.tables.length === 0) {
    replace(tables, h("p", { class: "muted" }, device.builtin
      ? "Tables of built-in devices are profiled on this host and cached; they are not stored here."
      : "No latency tables."));
    return card;
  }
  const calibration = new Map();
  const draw = () => replace(tables, table([
    { title: "Table", value: (t) => `#${t.id}` },
    { title: "Space", value: (t) => `${t.space} (${t.preset})` },
    { title: "Revision", class: "num", value: (t) => String(t.revision) },
    { title: "Blocks", class: "num", value: (t) => calibrated(calibration.get(t.id), (c) => `${c.entries}/${c.expected}`) },
    { title: "Calibration MAPE", class: "num", value: (t) => calibrated(calibration.get(t.id), (c) => (c.fit ? `${fmtNum(100 * c.fit.mape, 1)}%` : "not fitted")) },
    { title: "R²", class: "num", value: (t) => calibrated(calibration.get(t.id), (c) => (c.fit ? fmtNum(c.fit.r2, 3) : "—")) },
    { title: "Networks", class: "num", value: (t) => calibrated(calibration.get(t.id), (c) => (c.fit ? String(c.fit.samples) : "—")) },
    { title: "Size", class: "num", value: (t) => `${fmtCount(t.size_bytes)}B` },
    { title: "Uploaded", value: (t) => fmtDate(t.created_at) },
    { title: "sha256", value: (t) => h("span", { class: "mono", title: t.sha256 }, t.sha256.slice(0, 12)) },
  ], device.tables), h("p", { class: "muted small" }, "Calibration MAPE and R²: the table's predictions against the whole networks it was calibrated on (its validation error)."));
  draw();
  Promise.all(device.tables.map(async (t) => {
    try {
      const content = (await api(`/devices/${encodeURIComponent(device.name)}/latency-tables/${t.id}`)).content;
      calibration.set(t.id, { fit: content.calibration, entries: Object.keys(content.entries || {}).length, expected: content.expected_entries });
    } catch (error) {
      calibration.set(t.id, { error });
    }
  })).then(draw);
  return card;
}

function calibrated(entry, show) {
  if (!entry) return h("span", { class: "muted" }, "…");
  if (entry.error) return h("span", { class: "error-text", title: entry.error.message }, "unreadable");
  return show(entry);
}

document.addEventListener("nas-token", start);
start();
