// DOM and formatting helpers. Data from the API is only ever inserted as text (never as
// HTML), so a device or package name cannot inject markup.

/** Create an element: h("a", {href: "#/x", class: "y"}, "text", childNode, [more]). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "style") {
      // Through the CSSOM: the page's CSP (style-src 'self', docs/dashboard.md) refuses
      // style attributes set as markup or with setAttribute.
      el.style.cssText = String(value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replace all children of el. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** SVG element with attributes. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(undefined, { hour12: false });
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function badge(text, cls = text) {
  return h("span", { class: `badge ${cls ?? ""}` }, text ?? "—");
}

export function table(headers, rows, { empty = "Nothing to show.", caption } = {}) {
  const head = h("tr", {}, headers.map((t) => {
    const num = typeof t === "string" && t.startsWith("#");
    return h("th", { scope: "col", class: num ? "num" : null }, num ? t.slice(1) : t);
  }));
  const body = rows.length
    ? rows.map((cells) => h("tr", {}, cells.map((c) =>
      typeof c === "number" ? h("td", { class: "num" }, c) : h("td", {}, c ?? "—"))))
    : [h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, empty))];
  return h("table", {}, caption ? h("caption", { class: "muted" }, caption) : null,
    h("thead", {}, head), h("tbody", {}, body));
}

export function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}

export const JOB_STATES = [
  "pending", "waiting", "starting", "delivering", "downloaded", "installing", "rebooting",
  "cancelling", "succeeded", "failed", "timed_out", "cancelled",
];

export const STATE_COLORS = {
  pending: "#b8c0cf", waiting: "#d9a441", starting: "#7fa3e6", delivering: "#4d7fdc",
  downloaded: "#3a64b8", installing: "#2b4d95", rebooting: "#6a55c2", cancelling: "#c08a3e",
  succeeded: "#1f8a4c", failed: "#c0392b", timed_out: "#e0694f", cancelled: "#8c8c8c",
};

export function colorOf(state, i = 0) {
  const palette = ["#2457c5", "#1f8a4c", "#c0392b", "#b7791f", "#6a55c2", "#0f8a8a", "#8c8c8c"];
  return STATE_COLORS[state] ?? palette[i % palette.length];
}

/** A horizontal stacked bar of job states with a legend. */
export function stateBar(byState, total) {
  const sum = total || Object.values(byState || {}).reduce((a, b) => a + b, 0);
  const entries = JOB_STATES.filter((st) => (byState || {})[st])
    .concat(Object.keys(byState || {}).filter((st) => !JOB_STATES.includes(st)));
  const bar = h("div", { class: "bar", role: "img",
    "aria-label": entries.map((st) => `${st} ${byState[st]}`).join(", ") || "no jobs" },
  entries.map((st, i) => h("span", {
    style: `width:${sum ? (100 * byState[st]) / sum : 0}%;background:${colorOf(st, i)}`,
    title: `${st}: ${byState[st]}`,
  })));
  return bar;
}

export function legend(keys) {
  return h("div", { class: "legend" }, keys.map((k, i) =>
    h("span", {}, h("i", { style: `background:${colorOf(k, i)}` }), k)));
}

// -- LwM2M names ----------------------------------------------------------------------

export const FW_STATES = { 0: "Idle", 1: "Downloading", 2: "Downloaded", 3: "Updating" };

export const FW_RESULTS = {
  0: "Initial value",
  1: "Firmware updated successfully",
  2: "Not enough flash memory",
  3: "Out of RAM during downloading process",
  4: "Connection lost during downloading process",
  5: "Integrity check failure",
  6: "Unsupported package type",
  7: "Invalid URI",
  8: "Firmware update failed",
  9: "Unsupported protocol",
  10: "Firmware update cancelled",
  11: "Firmware update deferred",
};

export function fwStateName(v) {
  if (v === null || v === undefined) return "unknown";
  return FW_STATES[v] ? `${FW_STATES[v]} (${v})` : `unknown (${v})`;
}

export function fwResultName(v) {
  if (v === null || v === undefined) return "unknown";
  return FW_RESULTS[v] ? `${FW_RESULTS[v]} (${v})` : `unknown (${v})`;
}

export const BEARERS = {
  0: "GSM", 1: "TD-SCDMA", 2: "WCDMA", 3: "CDMA2000", 4: "WiMAX", 5: "LTE-TDD", 6: "LTE-FDD",
  7: "NB-IoT", 8: "5G NR TDD", 9: "5G NR FDD", 21: "WLAN", 22: "Bluetooth",
  23: "IEEE 802.15.4", 41: "Ethernet", 42: "DSL", 43: "PLC",
};

/** Object 4 resource id -> [label, formatter]. */
export const RADIO = {
  0: ["Network bearer", (v) => `${BEARERS[v] ?? "unknown"} (${v})`],
  1: ["Available bearers", (v) => BEARERS[v] ?? v],
  2: ["Radio signal strength", (v) => `${v} dBm`],
  3: ["Link quality", (v) => v],
  4: ["IP addresses", (v) => v],
  5: ["Router IP addresses", (v) => v],
  6: ["Link utilization", (v) => `${v} %`],
  7: ["APN", (v) => v],
  8: ["Cell ID", (v) => v],
  9: ["SMNC", (v) => v],
  10: ["SMCC", (v) => v],
  11: ["Signal SNR", (v) => `${v} dB`],
  12: ["LAC", (v) => v],
  13: ["Coverage enhancement level", (v) => v],
};

/** Human text for a failure reason string of the update engine. */
export const REASONS = {
  not_enough_storage: "Not enough flash memory (result 2)",
  out_of_ram: "Out of RAM during download (result 3)",
  connection_lost: "Connection lost during download (result 4)",
  integrity_failure: "Integrity check failure (result 5)",
  unsupported_package: "Unsupported package type (result 6)",
  invalid_uri: "Invalid URI (result 7)",
  update_failed: "Firmware update failed (result 8)",
  unsupported_protocol: "Unsupported protocol (result 9)",
  cancelled_on_device: "Cancelled on the device (result 10)",
  deferred: "Deferred by the device too long (result 11)",
  rolled_back: "Rolled back to the old firmware",
  wrong_version: "Came back on an unexpected version",
  version_unknown: "Version unreadable after the update",
  timed_out: "Timed out",
  unreachable: "Device unreachable",
  cancelled: "Cancelled by the operator",
  device_error: "Device answered an error code",
  no_delivery_method: "No delivery method in common",
  uri_too_long: "Package URI too long",
  no_firmware_object: "No firmware object (/5/0)",
  link_too_poor: "Radio link too poor",
  device_busy: "Device busy with another update",
  object5_stuck: "Object 5 stuck (ignored the reset)",
};

export function reasonText(reason) {
  if (!reason) return "—";
  return REASONS[reason] ? `${REASONS[reason]} — ${reason}` : reason;
}

/** Parse "a, b c" or one-per-line text into a list of distinct non-empty strings. */
export function splitList(text) {
  const out = [];
  for (const part of String(text || "").split(/[\s,]+/)) {
    if (part && !out.includes(part)) out.push(part);
  }
  return out;
}
