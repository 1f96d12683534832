// Campaign list and campaign page (state, waves, live progress over SSE with polling as
// fallback, state counts over time, failures by reason, devices, event log, actions).
import { api, can, streamUrl } from "../api.js";
import { timelineChart } from "../charts.js";
import { loading, pagedList, problemBox } from "../ui.js";
import {
  badge, fill, fmtTime, h, JOB_STATES, kv, legend, reasonText, stateBar, table,
} from "../util.js";

const CAMPAIGN_STATES = ["draft", "running", "paused", "completed", "aborted", "cancelled"];
const TERMINAL = new Set(["completed", "aborted", "cancelled"]);
const POLL_MS = 3000;
const EVENT_ROWS = 200;
const HEAVY_MS = 3000;

export async function renderCampaigns(main, query) {
  const state = query.get("state") || "";
  const select = h("select", { id: "c-state", name: "state" }, h("option", { value: "" }, "any"),
    CAMPAIGN_STATES.map((st) => h("option", { value: st, selected: st === state ? true : null }, st)));
  const box = h("div", {});
  fill(main, h("h1", {}, "Campaigns"),
    h("div", { class: "actions" },
      can("operator") ? h("a", { href: "#/campaigns/new", class: "button" }, "New campaign") : null),
    h("section", { class: "card" },
      h("form", { class: "filters", role: "search", "aria-label": "Campaign filter" },
        h("div", { class: "field" }, h("label", { for: "c-state" }, "State"), select)),
      box));
  const list = pagedList(box,
    (cursor) => api("/campaigns", { query: { state: select.value, limit: 50, cursor } }),
    (items) => table(["Campaign", "State", "Wave", "Package", "Progress", "Created"],
      items.map((c) => {
        const p = c.progress || {};
        return [
          h("a", { href: `#/campaigns/${encodeURIComponent(c.id)}` }, c.name || c.id),
          badge(c.state), c.wave, h("code", {}, c.package_id),
          h("div", {}, stateBar(p.by_state || {}, p.total), h("span", { class: "muted" }, `${p.finished ?? 0}/${p.total ?? 0} finished`)),
          fmtTime(c.created_at),
        ];
      }), { empty: "No campaigns." }),
    { label: "campaigns" });
  select.addEventListener("change", () => list.reset());
  return null;
}

export async function renderCampaign(main, id) {
  const cid = encodeURIComponent(id);
  const back = h("p", {}, h("a", { href: "#/campaigns" }, "← Campaigns"));
  fill(main, back, loading("Loading the campaign"));
  let campaign;
  try {
    campaign = await api(`/campaigns/${cid}`);
  } catch (err) {
    fill(main, back, h("h1", {}, `Campaign ${id}`), problemBox(err, "Loading the campaign"));
    return null;
  }

  const title = h("h1", {});
  const stateEl = h("span", { id: "campaign-state", class: "badge", "aria-live": "polite" });
  const summary = h("p", { id: "campaign-summary", "aria-live": "polite" });
  // why a paused campaign is paused (the API's paused_reason), not only in the event log
  const pausedWhy = h("p", { id: "paused-reason", class: "notice", role: "status", hidden: true });
  const actions = h("div", { class: "actions", role: "group", "aria-label": "Campaign actions" });
  const actionOut = h("div", { "aria-live": "polite" });
  const info = h("div", {});
  const counts = h("div", { id: "state-counts" });
  const waves = h("div", { id: "waves" });
  const chart = h("div", { id: "timeline" }, loading("Loading the timeline"));
  const failures = h("div", { id: "failures" }, loading("Loading failures"));
  const devices = h("div", { id: "campaign-devices" });
  const log = h("div", { id: "event-log", class: "scroll", tabindex: 0, "aria-label": "Event log" });
  const live = h("span", { class: "live", id: "live" }, "connecting…");
  const devState = h("select", { id: "d-state" }, h("option", { value: "" }, "any"),
    JOB_STATES.map((st) => h("option", { value: st }, st)));

  fill(main, back, title, h("p", {}, "State: ", stateEl, " ", live), summary, pausedWhy, actions, actionOut,
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "prog-title" },
        h("h2", { id: "prog-title" }, "Progress"), counts),
      h("section", { class: "card", "aria-labelledby": "info-title" },
        h("h2", { id: "info-title" }, "Campaign"), info)),
    h("section", { class: "card", "aria-labelledby": "waves-title" },
      h("h2", { id: "waves-title" }, "Waves"), waves),
    h("section", { class: "card", "aria-labelledby": "tl-title" },
      h("h2", { id: "tl-title" }, "Job states over time"), chart),
    h("section", { class: "card", "aria-labelledby": "fail-title" },
      h("h2", { id: "fail-title" }, "Failures by reason"), failures),
    h("section", { class: "card", "aria-labelledby": "cdev-title" },
      h("h2", { id: "cdev-title" }, "Devices"),
      h("form", { class: "filters", role: "search", "aria-label": "Device state filter" },
        h("div", { class: "field" }, h("label", { for: "d-state" }, "Job state"), devState)),
      devices),
    h("section", { class: "card", "aria-labelledby": "log-title" },
      h("h2", { id: "log-title" }, "Event log (latest first)"), log));

  let closed = false;
  let lastProgressKey = "";
  const eventRows = new Map();

  function renderHeader(c) {
    const p = c.progress || {};
    const by = p.by_state || {};
    fill(title, c.name || c.id);
    stateEl.className = `badge ${c.state}`;
    stateEl.textContent = c.state;
    const failed = (by.failed || 0) + (by.timed_out || 0);
    fill(summary, `${by.succeeded || 0} of ${p.total ?? 0} devices succeeded`,
      failed ? `, ${failed} failed` : "", by.cancelled ? `, ${by.cancelled} cancelled` : "",
      ` — ${p.finished ?? 0} finished, wave ${c.wave ?? 0}.`);
    pausedWhy.hidden = !(c.state === "paused" && c.paused_reason);
    fill(pausedWhy, pausedWhy.hidden ? null : h("strong", {}, "Paused: "), pausedWhy.hidden ? null : c.paused_reason);
    fill(counts, stateBar(by, p.total), legend(Object.keys(by).filter((k) => by[k])),
      table(["State", "#Jobs"], JOB_STATES.filter((st) => by[st]).map((st) => [badge(st), by[st]])
        .concat(Object.keys(by).filter((st) => !JOB_STATES.includes(st) && by[st]).map((st) => [badge(st), by[st]])),
      { empty: "No jobs yet." }),
    Object.keys(p.by_reason || {}).length
      ? table(["Reason", "#Jobs"], Object.entries(p.by_reason).filter(([, n]) => n)
        .sort((a, b) => b[1] - a[1]).map(([r, n]) => [reasonText(r), n]))
      : null);
    const spec = c.spec || {};
    const target = spec.target || {};
    fill(info, kv([
      ["ID", h("code", {}, c.id)], ["Package", h("code", {}, c.package_id)],
      ["Created", fmtTime(c.created_at)],
      ["Retry of", c.parent_id ? h("a", { href: `#/campaigns/${encodeURIComponent(c.parent_id)}` }, c.parent_id) : "—"],
      ["Target", describeTarget(target)], ["Mode", spec.mode],
      ["Canary", spec.canary ? `${spec.canary} device${spec.canary === 1 ? "" : "s"}` : "none"],
      ["Error threshold", spec.error_threshold ? describeThreshold(spec.error_threshold) : "none"],
      ["Errors counted", c.error_count ? `${c.error_count.failed} failed of ${c.error_count.finished} finished` : "—"],
      ["Rate limit", spec.rate_per_minute ? `${spec.rate_per_minute}/min (burst ${spec.burst ?? 1})` : "none"],
      ["Max concurrent", spec.max_concurrent ?? "no cap"],
    ]), h("details", {}, h("summary", {}, "Spec JSON"), h("pre", { class: "json" }, JSON.stringify(spec, null, 2))));
    renderWaves(c);
    renderActions(c);
  }

  function renderWaves(c) {
    const spec = c.spec || {};
    const list = c.waves || [];
    const label = (i) => `${i}${i === 0 && spec.canary ? " (canary)" : ""}${i === c.wave && !TERMINAL.has(c.state) ? " ◀ current" : ""}`;
    if (!list.length) {
      fill(waves, table(["Wave", "Planned"], [
        ...(spec.canary ? [["0 (canary)", `${spec.canary} devices`]] : []),
        ...(spec.waves || []).map((w, i) => [String(i + 1),
          w.percent != null ? `${w.percent} %` : w.count != null ? `${w.count} devices` : "the rest"]),
      ], { empty: "No waves planned yet." }));
      return;
    }
    fill(waves, table(["Wave", "#Size", "#Started", "#Succeeded", "#Failed", "#Finished", "Gate", "Soak", "Started at", "Gate verdict"],
      list.map((w) => [
        label(w.index), w.size ?? 0, w.started ?? 0, w.succeeded ?? 0, w.failed ?? 0, w.finished ?? 0,
        w.success_gate != null ? `${Math.round(w.success_gate * 100)} %` : "—",
        w.soak_s ? `${w.soak_s} s` : "—", fmtTime(w.started_at), gateVerdict(w),
      ]), { empty: "No waves." }));
  }

  function renderActions(c) {
    const by = (c.progress || {}).by_state || {};
    const failed = (by.failed || 0) + (by.timed_out || 0);
    const op = can("operator");
    const defs = [
      ["start", "Start", c.state === "draft"],
      ["pause", "Pause", c.state === "running"],
      ["resume", "Resume", c.state === "paused"],
      // the error threshold keeps counting across a resume: restarting it is explicit
      ["resume-reset", "Resume and reset error count", c.state === "paused" && Boolean(c.error_count?.failed)],
      ["cancel", "Cancel", !TERMINAL.has(c.state)],
      ["retry", "Retry failed", failed > 0 && c.state !== "draft"],
    ];
    fill(actions, defs.filter(([, , show]) => show).map(([verb, label]) => h("button", {
      type: "button", class: verb === "cancel" ? "danger" : "secondary", id: `action-${verb}`,
      disabled: op ? null : true, title: op ? null : "needs the operator role",
      onclick: () => act(verb),
    }, label)));
  }

  async function act(verb) {
    if (verb === "cancel" && !confirm("Cancel this campaign? Running jobs are cancelled.")) return;
    fill(actionOut);
    try {
      const result = verb === "resume-reset"
        ? await api(`/campaigns/${cid}/resume`, { method: "POST", query: { reset_errors: "true" } })
        : await api(`/campaigns/${cid}/${verb}`, { method: "POST" });
      if (verb === "retry") {
        location.hash = `#/campaigns/${encodeURIComponent(result.id)}`;
        return;
      }
      await refresh(true);
    } catch (err) {
      fill(actionOut, problemBox(err, `${verb} refused`));
    }
  }

  async function loadFailures() {
    try {
      const f = await api(`/campaigns/${cid}/failures`);
      const groups = f.groups || [];
      fill(failures, groups.length
        ? h("ul", { class: "groups" }, groups.map((g) => h("li", { "data-reason": g.reason },
          h("details", { open: groups.length <= 3 ? true : null },
            h("summary", {}, h("strong", {}, reasonText(g.reason)), ` — ${g.count} device${g.count === 1 ? "" : "s"}`),
            h("ul", { class: "eps" }, (g.endpoints || []).map((ep) => h("li", {},
              h("a", { href: `#/devices/${encodeURIComponent(ep)}` }, ep),
              g.details && g.details[ep] ? h("span", { class: "muted detail" }, ` — ${g.details[ep]}`) : null)))))))
        : h("p", { class: "muted" }, "No failures."));
    } catch (err) { fill(failures, problemBox(err, "Loading failures")); }
  }

  async function loadTimeline() {
    try {
      const t = await api(`/campaigns/${cid}/timeline`, { query: { buckets: 60 } });
      fill(chart, timelineChart(t.points || []));
    } catch (err) { fill(chart, problemBox(err, "Loading the timeline")); }
  }

  const devList = pagedList(devices,
    (cursor) => api(`/campaigns/${cid}/devices`, { query: { state: devState.value, limit: 100, cursor } }),
    (items) => table(["Device", "State", "Reason", "#Attempts", "Delivery", "Updated"], items.map((j) => [
      h("a", { href: `#/devices/${encodeURIComponent(j.endpoint)}` }, j.endpoint), badge(j.state),
      reasonText(j.reason), j.attempts, j.delivery, fmtTime(j.updated_at),
    ]), { empty: "No devices in this state." }),
    { label: "devices" });
  devState.addEventListener("change", () => devList.reset());

  let maxEventId = 0;
  function addEvents(items) {
    for (const e of items) {
      if (e && typeof e.id === "number") { eventRows.set(e.id, e); maxEventId = Math.max(maxEventId, e.id); }
    }
    const ids = [...eventRows.keys()].sort((x, y) => y - x);
    for (const old of ids.slice(EVENT_ROWS)) eventRows.delete(old);
    const rows = ids.slice(0, EVENT_ROWS).map((k) => eventRows.get(k));
    fill(log, table(["#", "Time", "Device", "Kind", "Details"], rows.map((e) => [
      e.id, fmtTime(e.at),
      e.endpoint && e.endpoint !== "*"
        ? h("a", { href: `#/devices/${encodeURIComponent(e.endpoint)}` }, e.endpoint)
        : h("span", { class: "muted" }, "campaign"),
      e.kind, details(e.data),
    ]), { empty: "No events yet." }));
  }

  /** New rows of the event log (after the newest shown), bounded to 20 pages a call. */
  async function loadEvents() {
    for (let page = 0; page < 20; page++) {
      const res = await api(`/campaigns/${cid}/events`, { query: { limit: 500, after_id: maxEventId } });
      const items = res.items || [];
      addEvents(items);
      if (items.length < 500 || closed) break;
    }
  }

  // the chart, failures and device table cost the server a scan: at most every HEAVY_MS
  // while jobs move (a trailing re-read catches the last change), at once on a new state
  let lastHeavy = 0;
  let heavyTimer = null;
  function heavy(now) {
    const wait = HEAVY_MS - (Date.now() - lastHeavy);
    if (now || wait <= 0) {
      if (heavyTimer) { clearTimeout(heavyTimer); heavyTimer = null; }
      lastHeavy = Date.now();
      return Promise.all([loadFailures(), loadTimeline(), devList.reload()]);
    }
    if (!heavyTimer) heavyTimer = setTimeout(() => { heavyTimer = null; if (!closed) heavy(true); }, wait);
    return null;
  }

  let refreshing = null;
  let pending = false;
  async function refresh(full) {
    if (closed) return;
    if (refreshing) { pending = true; return; }
    refreshing = (async () => {
      try {
        const c = await api(`/campaigns/${cid}`);
        if (closed) return;
        const stateChanged = c.state !== campaign.state;
        campaign = c;
        const key = JSON.stringify([c.state, c.wave, c.progress]);
        const changed = key !== lastProgressKey;
        lastProgressKey = key;
        renderHeader(c);
        if (changed || full) await heavy(full || stateChanged || TERMINAL.has(c.state));
        if (!closed) {
          await loadEvents().catch((err) => fill(log, problemBox(err, "Loading events")));
        }
      } catch (err) {
        if (!closed) fill(actionOut, problemBox(err, "Refreshing"));
      }
    })();
    await refreshing;
    refreshing = null;
    if (pending && !closed) { pending = false; refresh(false); }
  }

  // fallback polling: cheap /progress, a full refresh only when it changed
  async function poll() {
    if (closed || TERMINAL.has(campaign.state)) return;  // a finished campaign does not change
    try {
      const p = await api(`/campaigns/${cid}/progress`);
      const before = campaign.progress || {};
      if (p.state !== campaign.state || p.wave !== campaign.wave
        || JSON.stringify(p.by_state) !== JSON.stringify(before.by_state)) {
        await refresh(false);
      }
    } catch { /* the next poll or the stream will tell */ }
  }
  const pollTimer = setInterval(poll, POLL_MS);

  // live: SSE; each job event triggers a (coalesced) refresh
  let debounce = null;
  let source = null;
  if (typeof EventSource !== "undefined") {
    source = new EventSource(streamUrl({ campaign_id: id }));
    source.addEventListener("open", () => { live.textContent = "live"; live.classList.add("on"); });
    source.addEventListener("error", () => {
      live.classList.remove("on");
      live.textContent = source.readyState === EventSource.CLOSED ? "live updates off (polling)" : "reconnecting…";
    });
    let received = 0;
    source.addEventListener("job", () => {
      live.dataset.events = String(++received);
      // live events carry no log id: the log and the counters are re-read (coalesced)
      if (!debounce) debounce = setTimeout(() => { debounce = null; refresh(false); }, 250);
    });
  }

  renderHeader(campaign);
  lastProgressKey = JSON.stringify([campaign.state, campaign.wave, campaign.progress]);
  await Promise.all([loadFailures(), loadTimeline(), loadEvents().catch((err) => fill(log, problemBox(err, "Loading events")))]);

  return () => {
    closed = true;
    clearInterval(pollTimer);
    if (heavyTimer) clearTimeout(heavyTimer);
    if (debounce) clearTimeout(debounce);
    if (source) source.close();
  };
}

function fmtWhen(v) {
  if (v === null || v === undefined) return "—";
  return typeof v === "number" ? fmtTime(new Date(v * 1000).toISOString()) : fmtTime(v);
}

function details(data) {
  if (!data || typeof data !== "object") return "—";
  const text = Object.entries(data).filter(([k]) => k !== "facts")
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
  return text.length > 160 ? text.slice(0, 159) + "…" : text || "—";
}

function describeTarget(t) {
  const parts = [];
  const dc = t.device_class;
  if (dc) parts.push(`class ${[dc.name, dc.vendor_id, dc.class_id].filter(Boolean).join("/")}`);
  if (t.current_version) parts.push(`running ${t.current_version}`);
  if (t.tags && t.tags.length) parts.push(`tags ${t.tags.join(", ")}`);
  if (t.endpoints) parts.push(`${t.endpoints.length} listed device${t.endpoints.length === 1 ? "" : "s"}`);
  return parts.join("; ") || "—";
}

function describeThreshold(e) {
  const parts = [];
  if (e.count != null) parts.push(`${e.count} failures`);
  if (e.percent != null) parts.push(`${e.percent} %`);
  return `${parts.join(" or ")} after ${e.min_sample} finished → ${e.action}`;
}

// A wave's gate: met (when), overridden (by whom, what it lacked: an operator resumed past a
// lost gate, which is not a gate met), or not yet.
function gateVerdict(w) {
  if (w.gate === "overridden" && w.override) {
    return h("span", { class: "overridden", "data-gate": "overridden" },
      `overridden by ${w.override.by}: ${w.override.why}`);
  }
  if (w.gate === "met" || (w.gate == null && w.gate_met_at)) {
    return h("span", { "data-gate": "met" }, `met ${fmtWhen(w.gate_met_at)}`);
  }
  return "—";
}
