// The alarms page (Sự cố): the active alarms of the user's scope, live, and their history.
//
// Active: GET /api/v1/alarms once (it re-evaluates the rules), then the `alarms` of each live
// status event. History: GET /api/v1/alarms/history?since=&zone=&limit=&before= — each alarm
// of the user's scope with when it was raised and cleared (the server pairs them from its
// audit log, each recorded in its subject's zone), newest first, paged by the `next` cursor.
// It is read again when an alarm comes or goes.
import { _, N_, api, h, attempt, fmtTime, fmtDuration, zoneName, table, on, state } from "../app.js";

const PAGE_SIZE = 50;
const HOUR_S = 3600;

// what each kind of alarm is about (loa.monitoring.alarms.AlarmKind)
const KINDS = {
  endpoint_offline: N_("Loudspeaker offline"),
  zone_silent: N_("Zone silent"),
  source_down: N_("Source not sending"),
  underruns: N_("Audio underruns"),
  supply_voltage: N_("Supply voltage out of range"),
  relay_fault: N_("Protection relay tripped"),
  broker_down: N_("Control broker (MQTT) unreachable"),
  loop_lag: N_("Server overloaded"),
  clock_resync: N_("Master clock resynchronised"),
  disk_full: N_("Data disk full"),
};

// the history's periods: how far back (hours; 0 for all of it)
const PERIODS = [
  [24, N_("Last 24 hours")],
  [24 * 7, N_("Last 7 days")],
  [24 * 30, N_("Last 30 days")],
  [0, N_("All")],
];

const kindName = (kind) => (KINDS[kind] ? _(KINDS[kind]) : kind);

// the subjects of the station's own alarms (loa/monitoring/alarms.py), in words
const SUBJECTS = {
  server: N_("the server"), "master clock": N_("the master clock"), "data disk": N_("the data disk"),
};

export default {
  async render(container) {
    const stops = [];
    let left = false; // the page was left: answers that come later draw nothing
    const names = new Map(); // endpoint id → {name, zone}

    /** An alarm's subject: an endpoint (with its name and zone), a zone, or what it names;
     * `zone`: the zone it was recorded in, for an endpoint no longer registered. */
    const subject = (id, zone) => {
      const ep = names.get(id);
      if (ep || (zone && zone !== id)) {
        return h("span", {}, ep && ep.name ? [ep.name, " "] : null, h("code", {}, id),
          h("small", { class: "muted ep-tel" }, zoneName(ep ? ep.zone : zone)));
      }
      if (state.zones.some((z) => z.id === id)) return h("span", {}, zoneName(id), " ", h("code", {}, id));
      return SUBJECTS[id] ? _(SUBJECTS[id]) : id;
    };

    // --- the active alarms ---

    const activeBox = h("div", { "data-testid": "alarms-active", "aria-live": "polite" });
    const count = h("span", { class: "badge", "data-testid": "alarms-count" });
    let lastSig = null;

    function drawActive(alarms) {
      const sig = JSON.stringify(alarms);
      if (sig === lastSig) return; // the status comes every second: redraw only on a change
      lastSig = sig;
      const now = Date.now() / 1000;
      const rows = [...alarms].sort((a, b) => (b.raised_at || 0) - (a.raised_at || 0));
      count.textContent = String(rows.length);
      count.className = `badge ${rows.length ? "error" : "ok"}`;
      activeBox.replaceChildren(table([
        { title: _("Alarm"), value: (a) => h("strong", { "data-kind": a.kind }, kindName(a.kind)) },
        { title: _("Where"), value: (a) => subject(a.subject) },
        { title: _("Detail"), value: (a) => a.detail },
        { title: _("Raised"), value: (a) => fmtTime(a.raised_at) },
        { title: _("For"), value: (a) => (a.raised_at ? fmtDuration(now - a.raised_at) : "—") },
      ], rows, { empty: _("No active alarm.") }));
    }

    // --- the history, from the server, paged ---

    const period = h("select", { name: "period", "data-testid": "alarms-history-period" },
      PERIODS.map(([hours, label]) => h("option", { value: String(hours) }, _(label))));
    period.value = String(24 * 7);
    const zoneSelect = h("select", { name: "zone", "data-testid": "alarms-history-zone" },
      h("option", { value: "" }, _("All my zones")),
      state.zones.filter((z) => !z.id.includes("~")).map((z) =>
        h("option", { value: z.id }, `${z.name || z.id} (${z.id})`)));
    const historyBox = h("div", { "data-testid": "alarms-history", "aria-live": "polite" });
    const more = h("button", { type: "button", class: "secondary", hidden: true,
      "data-testid": "alarms-history-more", onclick: () => loadHistory(true) }, _("Show older"));
    let episodes = [];
    let next = null;
    let loading = 0; // the newest request: an older answer arriving late is dropped

    function drawHistory() {
      const now = Date.now() / 1000;
      historyBox.replaceChildren(table([
        { title: _("Alarm"), value: (a) => h("span", { "data-kind": a.kind }, kindName(a.kind)) },
        { title: _("Where"), value: (a) => subject(a.subject, a.zone) },
        { title: _("Detail"), value: (a) => a.detail || "—" },
        { title: _("Raised"), value: (a) => fmtTime(a.raised_at) },
        { title: _("Cleared"), value: (a) => {
          if (a.cleared_at) return fmtTime(a.cleared_at);
          if (a.active) return h("span", { class: "badge error" }, _("still active"));
          return h("span", { class: "muted" }, _("not recorded (the server stopped)"));
        } },
        { title: _("Lasted"), value: (a) => (a.cleared_at || a.active
          ? fmtDuration((a.cleared_at || now) - a.raised_at) : "—") },
      ], episodes, { empty: _("No alarm in this period.") }));
      more.hidden = next === null;
    }

    async function loadHistory(older = false) {
      const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
      const hours = Number(period.value);
      if (hours) q.set("since", String(Date.now() / 1000 - hours * HOUR_S));
      if (zoneSelect.value) q.set("zone", zoneSelect.value);
      if (older && next !== null) q.set("before", String(next));
      const mine = ++loading;
      more.disabled = true;
      const data = await attempt(() => api("GET", `/api/v1/alarms/history?${q}`));
      if (left || mine !== loading) return;
      more.disabled = false;
      if (!data) return;
      episodes = older ? [...episodes, ...data.alarms] : data.alarms;
      next = data.next;
      drawHistory();
    }

    period.addEventListener("change", () => loadHistory());
    zoneSelect.addEventListener("change", () => loadHistory());

    const eps = await attempt(() => api("GET", "/api/v1/endpoints"));
    for (const e of (eps && eps.endpoints) || []) names.set(e.id, { name: e.name, zone: e.zone });

    const refresh = h("button", { type: "button", class: "secondary", "data-testid": "alarms-refresh",
      onclick: async () => {
        const data = await attempt(() => api("GET", "/api/v1/alarms"));
        if (data && !left) drawActive(data.alarms);
        loadHistory();
      } }, _("Check now"));

    container.append(
      h("section", { class: "card" },
        h("div", { class: "row" }, h("h2", {}, _("Active alarms")), count, refresh),
        activeBox),
      h("section", { class: "card" }, h("h2", {}, _("History")),
        h("p", { class: "muted" }, _("When each alarm of your zones was raised and cleared.")),
        h("div", { class: "row" },
          h("label", {}, _("Period"), period),
          h("label", {}, _("Zone"), zoneSelect)),
        historyBox,
        h("div", { class: "row pager" }, more)));

    const data = await attempt(() => api("GET", "/api/v1/alarms"));
    drawActive((data && data.alarms) || []);
    await loadHistory();

    let seen = 0; // the first status may only repeat what GET alarms said
    let lastShown = null; // what the last status showed of a longer list, once fetched whole
    let fetching = false;
    const fetchAll = async (shown) => {
      const data = await attempt(() => api("GET", "/api/v1/alarms"));
      if (!data || left) return;
      lastShown = shown; // fetched: not again until an alarm is raised or cleared
      drawActive(data.alarms);
    };
    stops.push(on("status", (status) => {
      if (!status || !Array.isArray(status.alarms)) return;
      const before = lastSig;
      const total = status.alarms_total ?? status.alarms.length;
      if (total > status.alarms.length) {
        // the status shows only the newest (loa.api.status.STATUS_ALARMS): when an alarm is
        // raised or cleared (not when a detail's figure moves), the whole list comes from
        // GET alarms, once
        const shown = JSON.stringify([status.alarms.map((a) => [a.kind, a.subject, a.raised_at]),
          total]);
        if (shown === lastShown || fetching) return;
        fetching = true;
        fetchAll(shown).then(() => {
          fetching = false;
          if (before !== lastSig && seen++ > 0) loadHistory();
        });
        return;
      }
      lastShown = null;
      drawActive(status.alarms);
      // an alarm came or went: the history has it now
      if (before !== lastSig && seen++ > 0) loadHistory();
    }));

    return () => { left = true; for (const stop of stops) stop(); };
  },
};
