// Device profiles: how each device class is updated (payload form, protocols, push,
// per-state timeouts). List for everyone; create/replace/delete for operators.
import { api, can } from "../api.js";
import { loading, problemBox } from "../ui.js";
import { fill, h, table } from "../util.js";

const PROTOCOLS = ["coap", "coaps", "http", "https"];
const TIMEOUTS = ["start", "downloading", "downloaded", "updating", "reregistration"];

export async function renderProfiles(main, query) {
  const listBox = h("div", { id: "profiles-list" }, loading("Loading profiles"));
  const status = h("div", { id: "profile-status", "aria-live": "polite" });
  const form = can("operator") ? profileForm() : null;
  fill(main, h("h1", {}, "Device profiles"),
    h("p", { class: "muted" },
      "A profile is named by a device class (/3/0/1 Model Number) or \"default\". ",
      "Devices that check their own image format need the bare payload; fotakit agents ",
      "verify the signed package. Changes apply to jobs started afterwards."),
    h("section", { class: "card", "aria-labelledby": "prof-title" },
      h("h2", { id: "prof-title" }, "Profiles"), listBox),
    form ? form.card : null, status);

  async function load() {
    try {
      const { items } = await api("/profiles");
      fill(listBox, table(["Name", "Payload form", "Protocols", "Push", "Timeouts", "Stored", ""],
        items.map((p) => [
          h("code", {}, p.name), p.payload_form, p.protocols.join(" > "), p.push ? "allowed" : "never",
          Object.entries(p.timeouts).map(([k, v]) => `${k}=${v}s`).join(", ") || "server defaults",
          p.stored ? "yes" : "built in",
          form ? h("span", { class: "actions" },
            h("button", { type: "button", class: "secondary", "aria-label": `Edit profile ${p.name}`,
              onclick: () => form.edit(p) }, "Edit"),
            p.stored ? h("button", { type: "button", class: "danger", "aria-label": `Delete profile ${p.name}`,
              onclick: () => remove(p.name) }, "Delete") : null) : "",
        ]), { empty: "No profiles." }));
      const wanted = query.get("name");
      if (form && wanted) {
        const p = items.find((x) => x.name === wanted);
        if (p) form.edit(p);
      }
    } catch (err) { fill(listBox, problemBox(err, "Loading profiles")); }
  }

  async function remove(name) {
    if (!confirm(`Delete profile ${name}? Its devices fall back to the default profile.`)) return;
    try {
      await api(`/profiles/${encodeURIComponent(name)}`, { method: "DELETE" });
      fill(status, h("p", { role: "status" }, `Profile ${name} deleted.`));
      load();
    } catch (err) { fill(status, problemBox(err, "Deleting the profile")); }
  }

  function profileForm() {
    const name = h("input", { id: "pf-name", name: "name", required: true, maxlength: 128,
      placeholder: "device class or default", spellcheck: "false" });
    const formSel = h("select", { id: "pf-form", name: "payload_form" },
      h("option", { value: "signed" }, "signed package (fotakit agents)"),
      h("option", { value: "bare" }, "bare image (devices that check their own format)"));
    const protocols = h("input", { id: "pf-protocols", name: "protocols", value: PROTOCOLS.join(","),
      spellcheck: "false", title: "comma-separated, in order of preference" });
    const push = h("input", { id: "pf-push", name: "push", type: "checkbox", checked: true });
    const timeouts = Object.fromEntries(TIMEOUTS.map((k) => [k,
      h("input", { id: `pf-t-${k}`, name: k, type: "number", min: 1, step: "any", placeholder: "default" })]));
    const description = h("input", { id: "pf-description", name: "description", maxlength: 500 });
    const button = h("button", { type: "submit" }, "Save profile");
    const el = h("form", { class: "filters", "aria-label": "Create or replace a profile" },
      h("div", { class: "field" }, h("label", { for: "pf-name" }, "Name"), name),
      h("div", { class: "field" }, h("label", { for: "pf-form" }, "Payload form"), formSel),
      h("div", { class: "field" }, h("label", { for: "pf-protocols" }, "Protocols (preference order)"), protocols),
      h("div", { class: "field" }, h("label", { for: "pf-push" }, "Push allowed"), push),
      TIMEOUTS.map((k) => h("div", { class: "field" }, h("label", { for: `pf-t-${k}` }, `${k} timeout (s)`), timeouts[k])),
      h("div", { class: "field" }, h("label", { for: "pf-description" }, "Description"), description),
      button);
    el.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = {
        payload_form: formSel.value,
        protocols: protocols.value.split(",").map((x) => x.trim()).filter(Boolean),
        push: push.checked,
        timeouts: Object.fromEntries(TIMEOUTS.filter((k) => timeouts[k].value !== "")
          .map((k) => [k, Number(timeouts[k].value)])),
        description: description.value,
      };
      button.disabled = true;
      try {
        const saved = await api(`/profiles/${encodeURIComponent(name.value.trim())}`, { method: "PUT", body });
        fill(status, h("p", { role: "status", class: "ok" }, `Profile ${saved.name} saved: `,
          `${saved.payload_form} payload, ${saved.protocols.join(" > ")}, push ${saved.push ? "allowed" : "never"}.`));
        load();
      } catch (err) {
        fill(status, problemBox(err, "Profile refused"));
      } finally { button.disabled = false; }
    });
    return {
      card: h("section", { class: "card", "aria-labelledby": "pf-title" },
        h("h2", { id: "pf-title" }, "Create or replace a profile"), el),
      edit(p) {
        name.value = p.name; formSel.value = p.payload_form;
        protocols.value = p.protocols.join(","); push.checked = !!p.push;
        for (const k of TIMEOUTS) timeouts[k].value = p.timeouts[k] ?? "";
        description.value = p.description || "";
        name.focus();
      },
    };
  }

  load();
  return null;
}
