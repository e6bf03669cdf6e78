// The logs page: the broadcast log (Nhật ký phát: what each zone carried, when, for how long
// and why it ended) and, for admins, the audit log (Nhật ký thao tác: who did what, where,
// from where). Both filtered and paged by the server.
//
// GET /api/v1/log and GET /api/v1/audit take since, until (unix s), zone (it and below), q
// (text held, any case) and limit, and answer a page, newest first, with `next`: the
// cursor (`before=`) of the page after it. The broadcast log's first page also carries the
// segments on air now. Previous pages are asked again from the cursors kept on the way.
import {
  _, N_, api, h, attempt, fmtTime, fmtDuration, zoneName, table, may, roleName, state, TIME_ZONE,
} from "../app.js";

// fewer rows a page on a phone, where each row reads as a card
const PAGE_SIZE = window.matchMedia("(max-width: 600px)").matches ? 20 : 50;
const DAY_S = 86400;

const END_REASONS = {
  completed: N_("played in full"),
  released: N_("released"),
  preempted: N_("preempted by a higher priority"),
  cancelled: N_("cancelled"),
  "cut short": N_("cut short by its window"),
  failed: N_("source failed"),
  expired: N_("expired"),
  stopped: N_("log closed"),
  "server stopped": N_("server stopped"),
  "unclean stop": N_("server stopped uncleanly"),
};

const KINDS = {
  live: N_("live"), relay: N_("relay"), file: N_("file"), generator: N_("test tone"),
  idle: N_("silence"), alert: N_("alert"),
};

const ACTIONS = {
  command: N_("command to loudspeakers"),
  "zone.update": N_("zone changed"),
  "endpoint.add": N_("loudspeaker added"),
  "endpoint.update": N_("loudspeaker changed"),
  "endpoint.delete": N_("loudspeaker removed"),
  "endpoint.credentials": N_("loudspeaker password renewed"),
  "endpoint.import": N_("loudspeakers imported"),
  "user.add": N_("user added"),
  "user.update": N_("user changed"),
  "user.delete": N_("user removed"),
  "user.token.add": N_("token made"),
  "user.token.revoke": N_("token revoked"),
  login: N_("signed in"),
  "login.failed": N_("sign-in failed"),
  "login.refused": N_("sign-in refused (too many tries)"),
  logout: N_("signed out"),
  "alarm.raised": N_("alarm raised"),
  "alarm.cleared": N_("alarm cleared"),
  "alert.trigger": N_("alert sent"),
  "alert.cancel": N_("alert cancelled"),
  // what became of an alert (the server's entries: alert.<status>)
  "alert.pending": N_("alert waiting for its time"),
  "alert.active": N_("alert on air"),
  "alert.completed": N_("alert ended: played in full"),
  "alert.cancelled": N_("alert ended: cancelled"),
  "alert.expired": N_("alert ended: expired"),
  "live.take": N_("live taken"),
  "live.release": N_("live released"),
  "request.add": N_("programme asked for"),
  "request.release": N_("programme released"),
  "source.whip": N_("studio connected from a browser"),
  "cap.received": N_("CAP alert received"),
  "media.add": N_("media added"),
  "media.delete": N_("media deleted"),
  "schedule.add": N_("schedule item added"),
  "schedule.update": N_("schedule item changed"),
  "schedule.delete": N_("schedule item deleted"),
  "schedule.import": N_("schedule imported"),
  "schedule.missed": N_("scheduled item missed"),
  "schedule.failed": N_("scheduled item failed"),
  "schedule.cut_short": N_("scheduled item cut short"),
  "clock.wall_step": N_("server clock stepped"),
};

const said = (map, key) => (map[key] ? _(map[key]) : key);

/** Priority class names, as the reports name them (DESIGN.md's table). */
function priorityName(p) {
  if (p >= 100) return _("emergency");
  if (p >= 70) return _("live");
  if (p >= 60) return _("priority");
  if (p >= 50) return _("normal");
  if (p >= 10) return _("fill");
  return _("idle");
}

/** The station's wall clock of a unix time, as parts. */
function stationParts(unix) {
  const parts = new Intl.DateTimeFormat("en-US", { timeZone: TIME_ZONE, hourCycle: "h23",
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit" }).formatToParts(new Date(unix * 1000));
  const get = (type) => Number(parts.find((p) => p.type === type).value);
  return { y: get("year"), m: get("month"), d: get("day"), hh: get("hour"), mm: get("minute"), ss: get("second") };
}

/** A datetime-local value ("YYYY-MM-DDTHH:MM") read as the station's local time → unix s. */
function stationUnix(value) {
  const [date, time = "00:00"] = value.split("T");
  const [y, m, d] = date.split("-").map(Number);
  const [hh, mm] = time.split(":").map(Number);
  const guess = Date.UTC(y, m - 1, d, hh, mm) / 1000;
  const p = stationParts(guess);
  const offset = Date.UTC(p.y, p.m - 1, p.d, p.hh, p.mm, p.ss) / 1000 - guess;
  return guess - offset;
}

/** A unix time as a datetime-local value in the station's time. */
function stationInput(unix) {
  const p = stationParts(unix);
  const two = (n) => String(n).padStart(2, "0");
  return `${p.y}-${two(p.m)}-${two(p.d)}T${two(p.hh)}:${two(p.mm)}`;
}

// an audit entry's detail, said for people: each known field by its name and its value in
// words (zones by name, roles, classes, yes and no); internal fields left out; an unknown
// field as it is
const ALARM_KINDS = {
  endpoint_offline: N_("loudspeaker offline"), zone_silent: N_("zone silent"),
  source_down: N_("source down"), underruns: N_("audio dropouts"),
  supply_voltage: N_("supply voltage out of range"), relay_fault: N_("protection relay tripped"),
  broker_down: N_("control link (MQTT) lost"), loop_lag: N_("server running late"),
  clock_resync: N_("clock resynchronised"), disk_full: N_("disk full"),
};
const OPS = {
  volume: N_("volume"), mute: N_("mute"), unmute: N_("unmute"), power: N_("power"),
  reboot: N_("restart"), play: N_("play"), stop: N_("stop"), move: N_("move"),
};
const CLASSES = { normal: N_("normal"), priority: N_("priority"), emergency: N_("emergency") };
const SKIPPED = new Set(["batch", "id", "tz", "session", "overrides", "effective_at", "source",
  "cap", "fallback_text", "gap_s", "all", "created"]); // "created": a list, said first
const MAX_VALUE = 120; // characters of one value shown

// the subjects of the station's own alarms (loa/monitoring/alarms.py), in words
const ALARM_SUBJECTS = {
  server: N_("the server"), "master clock": N_("the master clock"), "data disk": N_("the data disk"),
};

/** An alert's note (loa/control/alerts/manager.py) in words, when it is one of its own. */
function noteWords(note) {
  const by = /^(triggered|cancelled) by (.+)$/.exec(note);
  if (by) return by[1] === "triggered" ? _("sent by {who}", { who: by[2] }) : _("cancelled by {who}", { who: by[2] });
  const NOTES = {
    "played in full": N_("played in full"), expired: N_("expired"), "took effect": N_("took effect"),
    "resumed after a restart": N_("resumed after a restart"),
    "expired while the server was down": N_("expired while the server was down"),
  };
  return NOTES[note] ? _(NOTES[note]) : note;
}

function contentWords(c) {
  if (!c || typeof c !== "object") return String(c);
  if (c.kind === "text") return _("text") + ` “${c.text || ""}”`;
  if (c.kind === "live") return _("live from {mount}", { mount: `/live/${c.mount || "studio"}` });
  if (c.kind === "media") return _("a file of the library ({id})", { id: c.id });
  if (c.kind === "tone") return _("test tone");
  return said(KINDS, c.kind);
}

/** [label, value] pairs of an audit entry's detail. */
function detailPairs(detail) {
  if (!detail || typeof detail !== "object") return [];
  const list = (v) => (Array.isArray(v) ? v : [v]);
  const FIELDS = {
    kind: [N_("Alarm"), (v) => said(ALARM_KINDS, v)],
    detail: [N_("Detail"), String],
    note: [N_("Note"), (v) => noteWords(String(v))],
    op: [N_("Command"), (v) => said(OPS, v)],
    volume_pct: [N_("Volume"), (v) => (v === null ? _("the zone's") : `${v}%`)],
    alert_volume_pct: [N_("Alert volume"), (v) => `${v}%`],
    on: [N_("Power"), (v) => (v ? _("on") : _("off"))],
    endpoints: [N_("Loudspeakers"), (v) => (Array.isArray(v) ? v.join(", ") : String(v))],
    class: [N_("Class"), (v) => said(CLASSES, v)],
    zones: [N_("Zones"), (v) => list(v).map(zoneName).join(", ")],
    zone: [N_("Zone"), zoneName],
    content: [N_("Content"), contentWords],
    tone: [N_("Attention tone"), (v) => (v ? _("yes") : _("no"))],
    repeat: [N_("Times to play"), String],
    expires_at: [N_("Expires"), (v) => fmtTime(v)],
    display_name: [N_("Display name"), String],
    roles: [N_("Roles"), (v) => list(v).map(roleName).join(", ")],
    role: [N_("Roles"), (v) => list(v).map(roleName).join(", ")],
    scope: [N_("Scope"), (v) => (v === "*" ? _("Every zone") : zoneName(v))],
    password: [N_("Password"), () => _("changed")],
    title: [N_("Title"), String],
    name: [N_("Name"), String],
    start: [N_("First date"), String],
    duration_s: [N_("Length"), fmtDuration],
    rrule: [N_("Repeats"), String],
    filename: [N_("File"), String],
    updated: [N_("Changed"), (v) => list(v).join(", ")],
    taken: [N_("Imported"), (v) => list(v).join(", ")],
    drafts: [N_("Drafts"), (v) => list(v).join(", ")],
    refused: [N_("Refused"), (v) => list(v).join("; ")],
    reason: [N_("Reason"), String],
    mount: [N_("Mount"), (v) => `/live/${v}`],
  };
  const pairs = [];
  for (const [key, value] of Object.entries(detail)) {
    if (SKIPPED.has(key) || value === null || value === undefined || value === "" ||
        (Array.isArray(value) && !value.length)) continue;
    const known = FIELDS[key];
    let text;
    if (known) text = known[1](value);
    else text = typeof value === "object" ? JSON.stringify(value) : String(value);
    if (text.length > MAX_VALUE) text = `${text.slice(0, MAX_VALUE - 1)}…`;
    pairs.push([known ? _(known[0]) : key, text]);
  }
  if (Array.isArray(detail.created) && detail.created.length) {
    pairs.unshift([_("Added"), detail.created.join(", ")]);
  }
  return pairs;
}

/** An audit entry's detail as lines of "name: value". */
function detailView(detail) {
  const pairs = detailPairs(detail);
  if (!pairs.length) return "—";
  return h("span", { class: "log-detail" }, pairs.map(([k, v]) =>
    h("span", {}, h("span", { class: "muted" }, `${k}: `), v)));
}

export default {
  async render(container) {
    const admin = may("admin");
    let view = "broadcast";
    let rows = [];
    let cursors = []; // the `before` cursor of each page after the first, up to the one shown
    let next = null; // the cursor of the page after the one shown (null: none)
    let asked = 0; // the newest request: an older answer arriving late is dropped

    // --- the filter form, shared by both logs ---
    const now = Date.now() / 1000;
    const zoneSelect = h("select", { name: "zone", "data-testid": "log-zone" },
      h("option", { value: "" }, _("All zones")),
      state.zones.filter((z) => !z.id.includes("~")).map((z) =>
        h("option", { value: z.id }, `${z.name || z.id} (${z.id})`)));
    const from = h("input", { type: "datetime-local", name: "from", "data-testid": "log-from",
      value: stationInput(now - DAY_S) });
    const to = h("input", { type: "datetime-local", name: "to", "data-testid": "log-to" });
    const text = h("input", { type: "search", name: "text", "data-testid": "log-text",
      placeholder: _("Programme, user, action…") });
    const form = h("form", { class: "card log-filters", "data-testid": "log-filters" },
      h("div", { class: "row" },
        h("label", {}, _("Zone"), zoneSelect),
        h("label", {}, _("From (station time)"), from),
        h("label", {}, _("To (station time)"), to),
        h("label", {}, _("Text"), text)),
      h("div", { class: "row" },
        h("button", { type: "submit", "data-testid": "log-apply" }, _("Show")),
        h("button", { type: "button", class: "secondary", "data-testid": "log-clear",
          onclick: () => { zoneSelect.value = ""; from.value = stationInput(Date.now() / 1000 - DAY_S);
            to.value = ""; text.value = ""; load(); } }, _("Clear filters"))));
    form.addEventListener("submit", (e) => { e.preventDefault(); load(); });

    // --- the two views ---
    const tabs = h("div", { class: "row log-tabs", role: "tablist", "aria-label": _("Logs") });
    const tabBroadcast = h("button", { type: "button", role: "tab", "data-testid": "log-tab-broadcast",
      onclick: () => show("broadcast") }, _("Broadcast log"));
    const tabAudit = admin ? h("button", { type: "button", role: "tab", "data-testid": "log-tab-audit",
      onclick: () => show("audit") }, _("Audit log")) : null;
    tabs.append(tabBroadcast, tabAudit || h("span", { class: "muted" },
      _("The audit log is for admins.")));
    tabs.addEventListener("keydown", (e) => { // arrows move between the tabs, as a tablist does
      if (!tabAudit || !["ArrowLeft", "ArrowRight"].includes(e.key)) return;
      const other = view === "broadcast" ? "audit" : "broadcast";
      show(other);
      (other === "audit" ? tabAudit : tabBroadcast).focus();
    });

    const box = h("div", { "data-testid": "log-table", role: "tabpanel" });
    const pager = h("div", { class: "row pager" });

    const broadcastColumns = [
      { title: _("Zone"), value: (r) => zoneName(r.zone) },
      { title: _("Programme"), value: (r) => h("span", {}, r.label || r.programme,
        r.label && r.label !== r.programme ? h("small", { class: "muted ep-tel" }, r.programme) : null) },
      { title: _("Kind"), value: (r) => said(KINDS, r.kind) },
      { title: _("Priority"), value: (r) => `${r.priority} · ${priorityName(r.priority)}` },
      { title: _("Started"), value: (r) => fmtTime(r.started_at) },
      { title: _("Ended"), value: (r) => (r.on_air ? h("span", { class: "badge ok" }, _("on air"))
        : fmtTime(r.ended_at)) },
      { title: _("Duration"), value: (r) => fmtDuration(r.on_air ? Date.now() / 1000 - r.started_at : r.duration_s) },
      { title: _("End"), value: (r) => (r.on_air ? "—" : said(END_REASONS, r.end_reason)) },
    ];
    const auditColumns = [
      { title: _("Time"), value: (r) => fmtTime(r.at) },
      { title: _("Who"), value: (r) => (r.actor === "loa" ? _("the server") : r.actor) },
      // in words; the raw action's id in its tooltip, or shown when it has no words yet
      { title: _("Action"), value: (r) => (ACTIONS[r.action]
        ? h("span", { title: r.action, "data-action": r.action }, _(ACTIONS[r.action]))
        : h("code", { "data-action": r.action }, r.action)) },
      { title: _("Subject"), value: (r) => (state.zones.some((z) => z.id === r.subject)
        ? zoneName(r.subject) : said(ALARM_SUBJECTS, r.subject)) },
      { title: _("Zone"), value: (r) => (r.zone ? zoneName(r.zone) : _("whole station")) },
      { title: _("From"), value: (r) => r.address || "—" },
      { title: _("Detail"), value: (r) => detailView(r.detail) },
    ];

    function draw() {
      // the pager's buttons are drawn anew: give the focus back to the one that had it
      const had = pager.contains(document.activeElement) ? document.activeElement.dataset.testid : null;
      box.replaceChildren(table(view === "broadcast" ? broadcastColumns : auditColumns, rows,
        { empty: _("Nothing in this log matches.") }));
      pager.replaceChildren(
        h("button", { type: "button", class: "secondary", disabled: !cursors.length,
          "data-testid": "log-prev", onclick: () => { cursors.pop(); fetchPage(); } }, _("Previous")),
        h("span", { "data-testid": "log-page" }, _("Page {page}", { page: cursors.length + 1 })),
        h("button", { type: "button", class: "secondary", disabled: next === null,
          "data-testid": "log-next", onclick: () => { cursors.push(next); fetchPage(); } }, _("Next")));
      const again = had && pager.querySelector(`[data-testid="${had}"]`);
      if (again && !again.disabled) again.focus();
      else if (had) { // it is disabled now (the last page, the first): the other one
        const other = pager.querySelector("button:not([disabled])");
        if (other) other.focus();
      }
    }

    /** The filters of the form as the API's query. */
    function filters() {
      const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
      if (zoneSelect.value) q.set("zone", zoneSelect.value);
      if (from.value) q.set("since", String(stationUnix(from.value)));
      if (to.value) q.set("until", String(stationUnix(to.value) + 59)); // the whole minute
      const needle = text.value.trim();
      if (needle) q.set("q", needle);
      return q;
    }

    /** The page the cursors point at, with the form's filters. */
    async function fetchPage() {
      const q = filters();
      const cursor = cursors.length ? cursors[cursors.length - 1] : null;
      if (cursor !== null) q.set("before", String(cursor));
      const mine = ++asked;
      const path = view === "broadcast" ? "/api/v1/log" : "/api/v1/audit";
      const data = await attempt(() => api("GET", `${path}?${q}`));
      if (mine !== asked) return; // a later request was made meanwhile
      if (!data) { rows = []; next = null; draw(); return; }
      rows = view === "broadcast"
        ? [...(data.on_air || []).map((r) => ({ ...r, on_air: true })), ...data.entries]
        : data.audit;
      next = data.next;
      draw();
    }

    /** The first page with the form's filters. */
    function load() {
      cursors = [];
      return fetchPage();
    }

    function show(which) {
      view = which;
      tabBroadcast.setAttribute("aria-selected", String(view === "broadcast"));
      tabBroadcast.className = view === "broadcast" ? "" : "secondary";
      if (tabAudit) {
        tabAudit.setAttribute("aria-selected", String(view === "audit"));
        tabAudit.className = view === "audit" ? "" : "secondary";
      }
      container.dataset.log = view;
      load();
    }

    container.append(tabs, form, h("section", { class: "card" }, box, pager));
    show("broadcast");
  },
};
