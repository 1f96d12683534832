// Fleet overview: totals, firmware versions, device classes, the device table.
import { api } from "../api.js";
import { barChart } from "../charts.js";
import { loading, pagedList, problemBox } from "../ui.js";
import { badge, fill, fmtTime, h, table } from "../util.js";

const SUMMARY_MS = 10_000;

export async function renderFleet(main, query) {
  const filters = Object.fromEntries([...query.entries()].filter(([k]) =>
    ["online", "class", "version", "tag", "q"].includes(k)));
  let list = null;
  const pageSize = Math.min(1000, Math.max(1, Number(query.get("limit")) || 50));
  const summary = h("div", {}, loading("Loading the fleet"));
  const devices = h("div", {});
  fill(main, h("h1", {}, "Fleet"), summary,
    h("section", { class: "card", "aria-labelledby": "dev-title" },
      h("h2", { id: "dev-title" }, "Devices"), filterForm(), devices));

  async function loadSummary() {
    try {
      const fleet = await api("/fleet");
      const byClass = Object.entries(fleet.by_class || {});
      const rows = (fleet.by_class_version || [])
        .slice().sort((a, b) => String(a.class).localeCompare(String(b.class)) || String(a.version).localeCompare(String(b.version)))
        .map((r) => [r.class ?? "unknown", r.version ?? "unknown", r.count]);
      fill(summary,
        h("div", { class: "stats" },
          stat(fleet.total, "devices", "stat-total"),
          stat(fleet.online, "online", "stat-online"),
          stat(fleet.offline, "offline", "stat-offline")),
        h("div", { class: "grid" },
          h("section", { class: "card", "aria-labelledby": "ver-title" },
            h("h2", { id: "ver-title" }, "Firmware versions"),
            barChart(Object.entries(fleet.by_version || {}).map(([k, v]) => [k || "unknown", v]),
              { label: "Devices by firmware version" })),
          h("section", { class: "card", "aria-labelledby": "cls-title" },
            h("h2", { id: "cls-title" }, "Device classes"),
            barChart(byClass.map(([k, v]) => [k || "unknown", v]), { label: "Devices by class" }),
            table(["Class", "Version", "#Devices"], rows, { empty: "No devices." }))));
    } catch (err) {
      fill(summary, problemBox(err, "Loading the fleet summary"));
    }
  }
  await loadSummary();
  // the totals and charts follow the fleet (the table keeps its page until asked)
  const timer = setInterval(loadSummary, SUMMARY_MS);

  function filterForm() {
    const form = h("form", { class: "filters", role: "search", "aria-label": "Device filters" },
      field("Status", h("select", { id: "f-online", name: "online" },
        h("option", { value: "" }, "any"), h("option", { value: "true" }, "online"),
        h("option", { value: "false" }, "offline"))),
      field("Class", h("input", { id: "f-class", name: "class", size: 12 })),
      field("Firmware version", h("input", { id: "f-version", name: "version", size: 10 })),
      field("Tag", h("input", { id: "f-tag", name: "tag", size: 10 })),
      field("Endpoint contains", h("input", { id: "f-q", name: "q", size: 14 })),
      h("button", { type: "submit" }, "Filter"),
      h("button", { type: "reset", class: "secondary" }, "Clear"));
    queueMicrotask(() => {
      for (const [k, v] of Object.entries(filters)) if (form.elements[k]) form.elements[k].value = v;
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      for (const k of Object.keys(filters)) delete filters[k];
      for (const el of form.elements) if (el.name && el.value) filters[el.name] = el.value;
      list?.reset();
    });
    form.addEventListener("reset", () => {
      for (const k of Object.keys(filters)) delete filters[k];
      queueMicrotask(() => list?.reset());
    });
    return form;
  }

  list = pagedList(devices,
    (cursor) => api("/devices", { query: { ...filters, limit: pageSize, cursor } }),
    (items) => table(["Endpoint", "Status", "Class", "Firmware", "Tags", "Address", "Last seen"],
      items.map((d) => [
        h("a", { href: `#/devices/${encodeURIComponent(d.endpoint)}` }, d.endpoint),
        badge(d.online ? "online" : "offline"),
        d.class, d.firmware_version, (d.tags || []).join(", ") || "—", d.address,
        fmtTime(d.last_seen),
      ]), { empty: "No device matches." }),
    { label: "devices" });
  return () => clearInterval(timer);
}

function stat(n, label, id) {
  return h("div", { class: "stat", id }, h("span", { class: "n" }, n ?? "—"), h("span", { class: "l" }, label));
}

function field(label, control) {
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control);
}
