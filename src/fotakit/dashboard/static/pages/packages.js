// Packages: list with paging, upload with progress, inspect (manifest), delete (admin).
import { api, can, upload } from "../api.js";
import { loading, pagedList, problemBox } from "../ui.js";
import { badge, fill, fmtBytes, fmtTime, h, table } from "../util.js";

export async function renderPackages(main) {
  const listBox = h("div", {});
  const inspect = h("div", { id: "package-inspect" });
  fill(main, h("h1", {}, "Packages"),
    can("operator") ? uploadCard() : null,
    h("section", { class: "card", "aria-labelledby": "pkg-title" },
      h("h2", { id: "pkg-title" }, "Stored packages"), listBox),
    inspect);

  const list = pagedList(listBox,
    (cursor) => api("/packages", { query: { limit: 50, cursor } }),
    (items) => table(["Package", "Version", "#Sequence", "Class", "Size", "Uploaded", "In use", ""],
      items.map((p) => [
        h("code", {}, p.id), p.version, p.sequence, className(p), fmtBytes(p.size),
        fmtTime(p.uploaded_at), p.in_use ? badge("in use", "running") : "no",
        h("span", { class: "actions" },
          h("button", { type: "button", class: "secondary", onclick: () => show(p.id),
            "aria-label": `Inspect package ${p.id}` }, "Inspect"),
          can("operator") ? h("a", { href: `#/campaigns/new?package=${encodeURIComponent(p.id)}`,
            "aria-label": `Roll out package ${p.id}` }, "Roll out…") : null,
          can("admin") ? h("button", { type: "button", class: "danger", disabled: p.in_use ? true : null,
            title: p.in_use ? "Used by a campaign or job that is not finished" : null,
            "aria-label": `Delete package ${p.id}`, onclick: () => remove(p.id) }, "Delete") : null),
      ]), { empty: "No packages yet." }),
    { label: "packages" });

  async function show(id) {
    fill(inspect, loading("Loading the package"));
    try {
      const p = await api(`/packages/${encodeURIComponent(id)}`);
      fill(inspect, h("section", { class: "card", "aria-labelledby": "inspect-title" },
        h("h2", { id: "inspect-title" }, `Package ${p.id}`),
        table(["Field", "Value"], Object.entries(p).filter(([k]) => k !== "manifest")
          .map(([k, v]) => [k, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)])),
        h("h3", {}, "Manifest"), h("pre", { class: "json" }, JSON.stringify(p.manifest ?? null, null, 2))));
      inspect.scrollIntoView({ block: "nearest" });
    } catch (err) { fill(inspect, problemBox(err, "Inspecting the package")); }
  }

  async function remove(id) {
    if (!confirm(`Delete package ${id}? Devices can no longer download it.`)) return;
    try {
      await api(`/packages/${encodeURIComponent(id)}`, { method: "DELETE" });
      fill(inspect, h("p", { role: "status" }, `Package ${id} deleted.`));
      list.reload();
    } catch (err) { fill(inspect, problemBox(err, "Deleting the package")); }
  }

  function uploadCard() {
    const file = h("input", { type: "file", id: "package-file", name: "package", required: true });
    // the names the package was built with (--vendor, --class): the server checks them
    // against the manifest's IDs and shows them instead of the UUIDs
    const vendor = h("input", { type: "text", id: "package-vendor", name: "vendor", placeholder: "example.com", maxlength: 255 });
    const klass = h("input", { type: "text", id: "package-class", name: "class", placeholder: "sensor-v2", maxlength: 255 });
    const bar = h("progress", { id: "upload-progress", max: 100, value: 0, hidden: true, "aria-label": "Upload progress" });
    const status = h("div", { id: "upload-status", "aria-live": "polite" });
    const button = h("button", { type: "submit" }, "Upload");
    const form = h("form", { class: "filters", "aria-label": "Upload a package" },
      h("div", { class: "field" }, h("label", { for: "package-file" }, "Signed package file"), file),
      h("div", { class: "field" }, h("label", { for: "package-vendor" }, "Vendor (optional)"), vendor),
      h("div", { class: "field" }, h("label", { for: "package-class" }, "Class name (optional)"), klass),
      button, bar, status);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = file.files[0];
      if (!f) { fill(status, h("p", { class: "error" }, "Choose a file first.")); return; }
      button.disabled = true;
      bar.hidden = false; bar.value = 0;
      fill(status, h("span", { class: "muted" }, `Uploading ${f.name} (${fmtBytes(f.size)})…`));
      try {
        const { status: code, body } = await upload("/packages", f, (done, total) => {
          bar.value = Math.round((100 * done) / total);
        }, { vendor: vendor.value.trim(), class: klass.value.trim() });
        bar.value = 100;
        fill(status, h("p", { role: "status", class: "ok" },
          code === 201 ? "Uploaded: " : "Already stored: ",
          h("code", {}, body.id), ` — version ${body.version}, sequence ${body.sequence}`));
        form.reset();
        list.reset();
      } catch (err) {
        bar.hidden = true;
        fill(status, problemBox(err, "Upload refused"));
      } finally {
        button.disabled = false;
      }
    });
    return h("section", { class: "card", "aria-labelledby": "up-title" },
      h("h2", { id: "up-title" }, "Upload a package"), form);
  }
  return null;
}

/** The package's class by name when an upload named it (its UUID on hover), else the UUID. */
function className(p) {
  if (p.class_name) return h("span", { title: `${p.vendor_name} / ${p.class}`, "data-class": p.class }, p.class_name);
  return shortId(p.class);
}

/** A long id (a class UUID) shortened for a table cell, in full on hover. */
function shortId(id) {
  if (!id) return "—";
  const text = String(id);
  return text.length > 13 ? h("code", { title: text }, `${text.slice(0, 8)}…`) : h("code", {}, text);
}
