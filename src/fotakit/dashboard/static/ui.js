// Shared page parts: problem boxes, pagers, loading text.
import { ApiError } from "./api.js";
import { h } from "./util.js";

/** A readable box for an ApiError (RFC 9457 problem) or any other error. */
export function problemBox(err, context) {
  const p = err instanceof ApiError ? err.problem : { title: "Error", detail: String(err?.message ?? err) };
  const status = err instanceof ApiError && err.status ? ` (HTTP ${err.status})` : "";
  const items = Array.isArray(p.errors) ? p.errors.map((e) => h("li", {}, describe(e))) : [];
  return h("div", { class: "problem", role: "alert" },
    h("strong", {}, `${context ? context + ": " : ""}${p.title || "Error"}${status}`),
    p.detail && p.detail !== p.title ? h("span", { class: "detail" }, p.detail) : null,
    items.length ? h("ul", {}, items) : null);
}

function describe(e) {
  if (typeof e === "string") return e;
  if (e && typeof e === "object") {
    const where = e.field ?? e.pointer ?? (Array.isArray(e.loc) ? e.loc.join(".") : e.loc);
    const msg = e.detail ?? e.msg ?? e.message ?? JSON.stringify(e);
    return where ? `${where}: ${msg}` : msg;
  }
  return String(e);
}

export function loading(what = "Loading") {
  return h("p", { class: "muted", "aria-busy": "true" }, `${what}…`);
}

/**
 * Cursor paging: keeps a stack of cursors so "Previous" works with opaque cursors.
 * load(cursor) must resolve to {items, next_cursor}; render(items) returns a node.
 */
export function pagedList(container, load, render, { label = "items" } = {}) {
  const stack = [null];
  let current = null;
  const body = h("div", {});
  const info = h("span", { class: "muted" });
  const prev = h("button", { type: "button", class: "secondary", disabled: true }, "Previous");
  const next = h("button", { type: "button", class: "secondary", disabled: true }, "Next");
  const pager = h("div", { class: "pager", role: "navigation", "aria-label": `${label} pages` }, prev, next, info);
  container.replaceChildren(body, pager);
  async function show(cursor) {
    prev.disabled = true; next.disabled = true;
    try {
      const page = await load(cursor);
      current = page;
      body.replaceChildren(render(page.items || []));
      info.textContent = `page ${stack.length}, ${(page.items || []).length} ${label}`;
      prev.disabled = stack.length <= 1;
      next.disabled = !page.next_cursor;
    } catch (err) {
      body.replaceChildren(problemBox(err, `Loading ${label}`));
    }
  }
  prev.addEventListener("click", () => { if (stack.length > 1) { stack.pop(); show(stack[stack.length - 1]); } });
  next.addEventListener("click", () => {
    if (current?.next_cursor) { stack.push(current.next_cursor); show(current.next_cursor); }
  });
  show(null);
  return { reload: () => show(stack[stack.length - 1]), reset: () => { stack.length = 1; stack[0] = null; return show(null); } };
}
