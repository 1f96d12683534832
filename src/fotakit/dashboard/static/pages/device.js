// Device page: registration, objects, Object 5 state/result and history, radio (/4),
// jobs, the update event log, tags and a single-device update for operators.
import { api, ApiError, can, streamUrl } from "../api.js";
import { loading, problemBox } from "../ui.js";
import {
  badge, fill, fmtTime, fwResultName, fwStateName, h, kv, RADIO, reasonText, splitList, table,
} from "../util.js";

/** Registration fields already shown from the device record (or too long to show). */
const SHOWN = new Set(["endpoint", "objects", "links", "registration_id", "address",
  "lwm2m_version", "binding", "queue_mode"]);

export async function renderDevice(main, endpoint) {
  const ep = encodeURIComponent(endpoint);
  fill(main, h("p", {}, h("a", { href: "#/fleet" }, "← Fleet")), loading(`Loading ${endpoint}`));
  let dev;
  try {
    dev = await api(`/devices/${ep}`);
  } catch (err) {
    fill(main, h("p", {}, h("a", { href: "#/fleet" }, "← Fleet")), h("h1", {}, endpoint),
      problemBox(err, "Loading the device"));
    return null;
  }
  const fw = h("div", {}, loading("Reading Object 5"));
  const radio = h("div", {}, loading("Reading Object 4"));
  const events = h("div", { class: "scroll", tabindex: 0, "aria-label": "Update event log" },
    loading("Loading the event log"));
  const status = h("span", { id: "device-status" });
  const jobs = h("div", { id: "device-jobs" });
  const live = h("span", { class: "live", id: "live" });
  const reg = dev.registration || {};
  fill(main,
    h("p", {}, h("a", { href: "#/fleet" }, "← Fleet")),
    h("h1", {}, dev.endpoint, " ", status),
    h("p", {}, live),
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "reg-title" },
        h("h2", { id: "reg-title" }, "Registration"),
        kv([
          ["Class", dev.class], ["Firmware", dev.firmware_version],
          ["Tags", (dev.tags || []).join(", ") || "—"],
          ["LwM2M version", dev.lwm2m_version], ["Binding", dev.binding],
          ["Queue mode", dev.queue_mode ? "yes" : "no"], ["Address", dev.address],
          ["Registration ID", dev.registration_id], ["Last seen", fmtTime(dev.last_seen)],
          ["Update profile", profileText(dev.profile)],
          ...Object.entries(reg).filter(([k]) => !SHOWN.has(k)).map(([k, v]) => [
            k.replaceAll("_", " "),
            k.endsWith("_at") ? fmtTime(v) : typeof v === "object" && v !== null ? JSON.stringify(v) : String(v),
          ]),
        ]),
        can("operator") ? tagsEditor(dev) : null),
      h("section", { class: "card", id: "firmware", "aria-labelledby": "fw-title" },
        h("h2", { id: "fw-title" }, "Firmware update (Object 5)"), fw),
      h("section", { class: "card", id: "radio", "aria-labelledby": "radio-title" },
        h("h2", { id: "radio-title" }, "Radio (Object 4)"), radio,
        h("button", { type: "button", class: "secondary", onclick: () => readRadio() }, "Read again"))),
    h("section", { class: "card", "aria-labelledby": "obj-title" },
      h("h2", { id: "obj-title" }, "Objects"),
      table(["Path", "#Object", "#Instance", "Version"], (dev.objects || []).map((o) =>
        [o.path, o.object_id, o.instance_id ?? "—", o.version ?? "—"]), { empty: "No objects registered." }),
      readTool(ep)),
    h("section", { class: "card", "aria-labelledby": "jobs-title" },
      h("h2", { id: "jobs-title" }, "Update jobs"), jobs,
      can("operator") ? updateForm(ep) : null),
    h("section", { class: "card", "aria-labelledby": "ev-title" },
      h("h2", { id: "ev-title" }, "Update event log (latest first)"), events));

  let closed = false;
  function showDevice(d) {
    dev = d;
    fill(status, badge(d.online ? "online" : "offline"));
    fill(jobs, table(["Job", "Campaign", "Package", "State", "Reason", "#Attempts", "Updated"],
      (d.jobs || []).map((j) => [
        j.id, j.campaign_id ? h("a", { href: `#/campaigns/${encodeURIComponent(j.campaign_id)}` }, j.campaign_id) : "—",
        j.package_id, badge(j.state),
        j.reason_detail ? h("span", {}, reasonText(j.reason), h("br", {}), h("span", { class: "muted detail" }, j.reason_detail))
          : reasonText(j.reason),
        j.attempts, fmtTime(j.updated_at),
      ]), { empty: "No update jobs." }));
  }

  async function readFirmware() {
    try {
      const f = await api(`/devices/${ep}/firmware`);
      if (closed) return;
      fill(fw,
        kv([["State", h("span", { id: "fw-state" }, fwStateName(f.state))],
          ["Result", h("span", { id: "fw-result" }, fwResultName(f.result))],
          ["Source", dev.online ? "live read" : "last seen (device offline)"]]),
        h("h3", {}, "History"),
        table(["Time", "State", "Result"], (f.history || []).map((x) =>
          [fmtTime(x.at), fwStateName(x.state), fwResultName(x.result)]), { empty: "No state changes seen yet." }));
    } catch (err) { if (!closed) fill(fw, problemBox(err, "Reading Object 5")); }
  }

  async function readRadio() {
    if (!dev.online) {
      fill(radio, h("p", { class: "muted", id: "radio-offline" }, "Device offline: radio figures cannot be read now."));
      return;
    }
    fill(radio, loading("Reading Object 4"));
    try {
      const r = await api(`/devices/${ep}/resources/4`);
      if (!closed) fill(radio, radioTable(r));
    } catch (err) {
      if (closed) return;
      fill(radio, err instanceof ApiError && (err.status === 503 || err.status === 504)
        ? h("p", { class: "muted", id: "radio-offline" }, `Device offline or not answering: ${err.message}`)
        : problemBox(err, "Reading Object 4"));
    }
  }

  const rows = new Map();
  let maxEventId = 0;
  async function loadEvents() {
    try {
      for (let page = 0; page < 20 && !closed; page++) {  // bounded
        const res = await api(`/devices/${ep}/events`, { query: { limit: 500, after_id: maxEventId } });
        const items = res.items || [];
        for (const e of items) if (typeof e.id === "number") { rows.set(e.id, e); maxEventId = Math.max(maxEventId, e.id); }
        if (items.length < 500) break;
      }
      const ids = [...rows.keys()].sort((a, b) => b - a);
      for (const old of ids.slice(200)) rows.delete(old);
      if (!closed) fill(events, eventTable(ids.slice(0, 200).map((k) => rows.get(k))));
    } catch (err) { if (!closed) fill(events, problemBox(err, "Loading the event log")); }
  }

  let busy = false;
  let again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const d = await api(`/devices/${ep}`);
      if (closed) return;
      const wasOnline = dev.online;
      showDevice(d);
      await Promise.all([readFirmware(), loadEvents(), d.online !== wasOnline ? readRadio() : null]);
    } catch { /* the next event retries */ } finally {
      busy = false;
      if (again && !closed) { again = false; refresh(); }
    }
  }

  // live: this device's job and registration events re-read the page's live parts
  let timer = null;
  let source = null;
  if (typeof EventSource !== "undefined") {
    source = new EventSource(streamUrl({ endpoint }));
    source.addEventListener("open", () => { live.textContent = "live"; live.classList.add("on"); });
    source.addEventListener("error", () => { live.classList.remove("on"); live.textContent = "reconnecting…"; });
    const poke = () => { if (!timer) timer = setTimeout(() => { timer = null; refresh(); }, 300); };
    source.addEventListener("job", poke);
    source.addEventListener("device", poke);
  }

  showDevice(dev);
  await Promise.all([readFirmware(), readRadio(), loadEvents()]);
  return () => {
    closed = true;
    if (timer) clearTimeout(timer);
    if (source) source.close();
  };
}

/** Object 4 values ({"/4/0/2": -70, "/4/0/4/0": "10.0.0.1", …}) as a named table. */
function radioTable(read) {
  const values = read.values ?? (read.path ? { [read.path]: read.value } : {});
  const byRes = new Map();
  for (const [path, value] of Object.entries(values)) {
    const parts = path.split("/").filter(Boolean).map(Number);
    if (parts[0] !== 4 || parts.length < 3) continue;
    const key = `${parts[1]}/${parts[2]}`;
    if (!byRes.has(key)) byRes.set(key, { inst: parts[1], rid: parts[2], values: [] });
    byRes.get(key).values.push(value);
  }
  const rows = [...byRes.values()].sort((a, b) => a.inst - b.inst || a.rid - b.rid).map((r) => {
    const [label, fmt] = RADIO[r.rid] ?? [`Resource ${r.rid}`, (v) => v];
    const shown = r.values.map((v) => (typeof v === "object" && v !== null
      ? Object.values(v).map((x) => fmt(x)).join(", ") : fmt(v))).join(", ");
    return [label, h("span", { "data-rid": r.rid }, String(shown)), `/4/${r.inst}/${r.rid}`];
  });
  return table(["Figure", "Value", "Path"], rows, { empty: "No Object 4 resources." });
}

export function eventTable(items) {
  return table(["#", "Time", "Kind", "Job", "Details"], items.map((e) => [
    e.id, fmtTime(e.at), e.kind, e.job_id ?? "—", summarize(e.data),
  ]), { empty: "No events." });
}

function summarize(data) {
  if (!data || typeof data !== "object") return "—";
  const parts = [];
  for (const [k, v] of Object.entries(data)) {
    if (k === "facts") continue;
    parts.push(`${k}=${typeof v === "object" ? JSON.stringify(v) : v}`);
  }
  const text = parts.join(" ");
  return text.length > 160 ? text.slice(0, 159) + "…" : text || "—";
}

function tagsEditor(dev) {
  const input = h("input", { id: "tags-input", value: (dev.tags || []).join(", "), size: 24 });
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "filters", "aria-label": "Edit tags" },
    h("div", { class: "field" }, h("label", { for: "tags-input" }, "Tags (comma separated)"), input),
    h("button", { type: "submit", class: "secondary" }, "Save tags"), out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const d = await api(`/devices/${encodeURIComponent(dev.endpoint)}/tags`,
        { method: "PUT", body: { tags: splitList(input.value) } });
      fill(out, h("span", { class: "muted" }, `Saved: ${(d.tags || []).join(", ") || "no tags"}`));
    } catch (err) { fill(out, problemBox(err, "Saving tags")); }
  });
  return form;
}

function readTool(ep) {
  const input = h("input", { id: "read-path", placeholder: "3/0/3", size: 12, required: true });
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "filters", "aria-label": "Read a resource" },
    h("div", { class: "field" }, h("label", { for: "read-path" }, "Read a path live"), input),
    h("button", { type: "submit", class: "secondary" }, "Read"), out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const path = input.value.trim().replace(/^\/+/, "");
    fill(out, loading("Reading"));
    try {
      const r = await api(`/devices/${ep}/resources/${path.split("/").map(encodeURIComponent).join("/")}`);
      fill(out, h("pre", { class: "json" }, JSON.stringify(r, null, 2)));
    } catch (err) { fill(out, problemBox(err, `Reading /${path}`)); }
  });
  return form;
}

function updateForm(ep) {
  const select = h("select", { id: "update-package" }, h("option", { value: "" }, "— choose a package —"));
  const out = h("div", { "aria-live": "polite" });
  api("/packages", { query: { limit: 1000 } }).then((page) => {
    for (const p of page.items || []) select.appendChild(h("option", { value: p.id }, `${p.version} (sequence ${p.sequence}) — ${p.id}`));
  }).catch((err) => fill(out, problemBox(err, "Loading packages")));
  const form = h("form", { class: "filters", "aria-label": "Update this device" },
    h("div", { class: "field" }, h("label", { for: "update-package" }, "Update this device to"), select),
    h("button", { type: "submit" }, "Start update"), out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!select.value) { fill(out, h("p", { class: "error" }, "Choose a package first.")); return; }
    try {
      const job = await api(`/devices/${ep}/update`, { method: "POST", body: { package_id: select.value } });
      fill(out, h("span", {}, `Job ${job.id} created (${job.state}). Reload to follow it.`));
    } catch (err) { fill(out, problemBox(err, "Starting the update")); }
  });
  return form;
}

/** The device profile a job would use: name (linked), form, protocols, push, and why. */
function profileText(p) {
  if (!p) return "—";
  return h("span", { id: "device-profile" },
    h("a", { href: `#/profiles?name=${encodeURIComponent(p.name)}` }, p.name), " — ",
    `${p.payload_form} payload, ${(p.protocols || []).join(" > ")}, push ${p.push ? "allowed" : "never"}`,
    h("br", {}), h("span", { class: "muted" }, p.why || ""));
}
