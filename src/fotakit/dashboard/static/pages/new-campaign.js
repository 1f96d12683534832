// Create-campaign form: builds the CampaignSpec JSON (fotakit.updates.campaign) and posts it.
import { api, ApiError, can } from "../api.js";
import { problemBox } from "../ui.js";
import { fill, h, splitList } from "../util.js";

/** Which form control shows a spec field (by the first segment of the field path). */
const FIELD_INPUT = {
  name: "nc-name", package_id: "nc-package", "target.device_class": "nc-class",
  "target.current_version": "nc-version", "target.tags": "nc-tags", "target.endpoints": "nc-endpoints",
  target: "nc-class", mode: "nc-mode", cap: "nc-cap", canary: "nc-canary",
  canary_success_gate: "nc-canary-gate", canary_soak_s: "nc-canary-soak", waves: "nc-waves",
  error_threshold: "nc-err-percent", "error_threshold.count": "nc-err-count",
  "error_threshold.min_sample": "nc-err-min", gate_action: "nc-gate-action",
  rate_per_minute: "nc-rate", burst: "nc-burst", jitter_s: "nc-jitter",
  max_concurrent: "nc-concurrent", retry_budget: "nc-retries",
};

export async function renderNewCampaign(main, query) {
  if (!can("operator")) {
    fill(main, h("h1", {}, "New campaign"), h("p", {}, "Creating campaigns needs the operator role."));
    return null;
  }
  const pkg = h("select", { id: "nc-package", name: "package_id", required: true },
    h("option", { value: "" }, "— choose a package —"));
  const out = h("div", { id: "nc-result", "aria-live": "polite" });
  const preview = h("pre", { class: "json", id: "nc-preview" });

  const form = h("form", { id: "new-campaign", "aria-label": "New campaign", novalidate: true },
    h("fieldset", {}, h("legend", {}, "What"),
      h("div", { class: "form-grid" },
        field("Name", h("input", { id: "nc-name", required: true, maxlength: 255 })),
        field("Package", pkg))),
    h("fieldset", {}, h("legend", {}, "Which devices (all criteria must hold)"),
      h("div", { class: "form-grid" },
        field("Device class (model)", h("input", { id: "nc-class" }), "/3/0/1 of the device, e.g. sensor-v2"),
        field("Current firmware version", h("input", { id: "nc-version" }), "exact match of /3/0/3"),
        field("Tags", h("input", { id: "nc-tags" }), "comma separated; devices must carry all"),
        field("Devices", h("textarea", { id: "nc-endpoints", rows: 3 }), "explicit endpoints, one per line or comma separated"),
        field("Selection", h("select", { id: "nc-mode" }, h("option", { value: "snapshot" }, "snapshot (members fixed at start)"),
          h("option", { value: "continuous" }, "continuous (late devices join)"))),
        field("Cap (continuous)", num("nc-cap", { min: 1 }), "at most this many members"))),
    h("fieldset", {}, h("legend", {}, "Waves and gates"),
      h("div", { class: "form-grid" },
        field("Canary devices", num("nc-canary", { min: 0, value: 0 }), "wave 0; 0 = no canary"),
        field("Canary success gate (%)", num("nc-canary-gate", { min: 0, max: 100, value: 100 })),
        field("Canary soak (s)", num("nc-canary-soak", { min: 0, value: 0 })),
        field("Wave sizes (%)", h("input", { id: "nc-waves", placeholder: "e.g. 10, 40" }),
          "comma separated percentages; a last wave takes the rest. Empty: one wave"),
        field("Wave success gate (%)", num("nc-wave-gate", { min: 0, max: 100, value: 100 })),
        field("Wave soak (s)", num("nc-wave-soak", { min: 0, value: 0 })),
        field("Gate failed →", h("select", { id: "nc-gate-action" }, h("option", { value: "pause" }, "pause"), h("option", { value: "abort" }, "abort"))))),
    h("fieldset", {}, h("legend", {}, "Error threshold"),
      h("div", { class: "form-grid" },
        field("Failed (%)", num("nc-err-percent", { min: 0, max: 100 }), "empty: no percentage threshold"),
        field("Failed (count)", num("nc-err-count", { min: 1 })),
        field("Minimum finished", num("nc-err-min", { min: 1, value: 1 })),
        field("Then", h("select", { id: "nc-err-action" }, h("option", { value: "pause" }, "pause"), h("option", { value: "abort" }, "abort"))))),
    h("fieldset", {}, h("legend", {}, "Limits"),
      h("div", { class: "form-grid" },
        field("Rate (devices/min)", num("nc-rate", { min: 0, step: "any" }), "empty: no limit"),
        field("Burst", num("nc-burst", { min: 1 })),
        field("Max concurrent transfers", num("nc-concurrent", { min: 1 })),
        field("Start jitter (s)", num("nc-jitter", { min: 0, value: 0, step: "any" })),
        field("Attempts per device", num("nc-retries", { min: 0, value: 3 })))),
    h("p", {}, h("label", {}, h("input", { type: "checkbox", id: "nc-start", checked: true }), " Start immediately")),
    h("details", {}, h("summary", {}, "Spec JSON (what is sent)"), preview),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "nc-submit" }, "Create campaign")),
    out);

  fill(main, h("h1", {}, "New campaign"), h("section", { class: "card" }, form));

  try {
    const page = await api("/packages", { query: { limit: 1000 } });
    for (const p of page.items || []) {
      pkg.appendChild(h("option", { value: p.id }, `${p.version} (sequence ${p.sequence}) — ${p.id}`));
    }
    const wanted = query.get("package");
    if (wanted) pkg.value = wanted;
    if (!(page.items || []).length) fill(out, h("p", {}, "No packages stored yet: ", h("a", { href: "#/packages" }, "upload one first"), "."));
  } catch (err) { fill(out, problemBox(err, "Loading packages")); }

  const update = () => {
    try { preview.textContent = JSON.stringify(buildSpec(form), null, 2); }
    catch (err) { preview.textContent = `(${err.message})`; }
  };
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  update();

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    let spec;
    try {
      spec = buildSpec(form);
    } catch (err) {
      markField(form, err.field);
      fill(out, problemBox(new ApiError(0, { title: "Check the form", detail: err.message })));
      return;
    }
    const button = form.querySelector("#nc-submit");
    button.disabled = true;
    fill(out, h("p", { class: "muted" }, "Creating…"));
    try {
      const c = await api("/campaigns", { method: "POST", body: spec });
      location.hash = `#/campaigns/${encodeURIComponent(c.id)}`;
    } catch (err) {
      const fieldName = err instanceof ApiError ? problemField(err.problem) : null;
      markField(form, fieldName);
      fill(out, problemBox(err, "The campaign was not created"));
    } finally {
      button.disabled = false;
    }
  });
  return null;
}

class FormError extends Error {
  constructor(field, message) { super(message); this.field = field; }
}

function value(form, id) { return form.querySelector(`#${id}`).value.trim(); }

function number(form, id, field, { integer = false } = {}) {
  const raw = value(form, id);
  if (raw === "") return null;
  const n = Number(raw);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new FormError(field, `${field}: "${raw}" is not ${integer ? "a whole number" : "a number"}`);
  }
  return n;
}

/** The CampaignSpec JSON from the form (plus "start"). Throws FormError for unusable input. */
export function buildSpec(form) {
  const target = {};
  const cls = value(form, "nc-class");
  if (cls) target.device_class = { name: cls };
  const ver = value(form, "nc-version");
  if (ver) target.current_version = ver;
  const tags = splitList(value(form, "nc-tags"));
  if (tags.length) target.tags = tags;
  const eps = splitList(value(form, "nc-endpoints"));
  if (eps.length) target.endpoints = eps;

  const gate = (number(form, "nc-wave-gate", "waves success gate") ?? 100) / 100;
  const soak = number(form, "nc-wave-soak", "waves soak") ?? 0;
  const sizes = splitList(value(form, "nc-waves")).map((p) => {
    const n = Number(p.replace(/%$/, ""));
    if (!Number.isFinite(n) || n <= 0) throw new FormError("waves", `waves: "${p}" is not a positive percentage`);
    return n;
  });
  const waves = sizes.map((p) => ({ percent: p, success_gate: gate, soak_s: soak }));
  if (!waves.length || sizes.reduce((a, b) => a + b, 0) < 100) waves.push({ success_gate: gate, soak_s: soak });

  const spec = {
    name: value(form, "nc-name"),
    package_id: value(form, "nc-package"),
    target,
    mode: value(form, "nc-mode"),
    canary: number(form, "nc-canary", "canary", { integer: true }) ?? 0,
    canary_success_gate: (number(form, "nc-canary-gate", "canary_success_gate") ?? 100) / 100,
    canary_soak_s: number(form, "nc-canary-soak", "canary_soak_s") ?? 0,
    waves,
    gate_action: value(form, "nc-gate-action"),
    jitter_s: number(form, "nc-jitter", "jitter_s") ?? 0,
    retry_budget: number(form, "nc-retries", "retry_budget", { integer: true }) ?? 3,
    start: form.querySelector("#nc-start").checked,
  };
  const cap = number(form, "nc-cap", "cap", { integer: true });
  if (cap !== null) spec.cap = cap;
  const errPercent = number(form, "nc-err-percent", "error_threshold");
  const errCount = number(form, "nc-err-count", "error_threshold.count", { integer: true });
  if (errPercent !== null || errCount !== null) {
    spec.error_threshold = {
      percent: errPercent, count: errCount,
      min_sample: number(form, "nc-err-min", "error_threshold.min_sample", { integer: true }) ?? 1,
      action: value(form, "nc-err-action"),
    };
  }
  const rate = number(form, "nc-rate", "rate_per_minute");
  if (rate !== null) spec.rate_per_minute = rate;
  const burst = number(form, "nc-burst", "burst", { integer: true });
  if (burst !== null) spec.burst = burst;
  const conc = number(form, "nc-concurrent", "max_concurrent", { integer: true });
  if (conc !== null) spec.max_concurrent = conc;
  return spec;
}

/** The spec field a 422 problem names, from its errors list or "field: message" detail. */
function problemField(problem) {
  for (const e of problem.errors || []) {
    if (e && typeof e === "object") {
      const f = e.field ?? (Array.isArray(e.loc) ? e.loc.filter((x) => x !== "body").join(".") : null);
      if (f) return String(f);
    }
  }
  if (typeof problem.field === "string") return problem.field;
  const m = /^([\w.[\]]+):/.exec(problem.detail || "");
  return m ? m[1] : null;
}

function markField(form, fieldName) {
  if (!fieldName) return;
  const clean = fieldName.replace(/\[\d+\]/g, "");
  const parts = clean.split(".");
  for (let n = parts.length; n > 0; n--) {
    const id = FIELD_INPUT[parts.slice(0, n).join(".")];
    if (id) {
      const el = form.querySelector(`#${id}`);
      el.setAttribute("aria-invalid", "true");
      el.focus();
      return;
    }
  }
}

function num(id, attrs = {}) {
  return h("input", { id, type: "number", inputmode: "decimal", ...attrs });
}

function field(label, control, hint) {
  const hintId = hint ? `${control.id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null);
}
