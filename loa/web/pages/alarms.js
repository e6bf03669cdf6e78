// The alarms page (Sự cố): the active alarms of the user's scope, live, and their history.
//
// Active: GET /api/v1/alarms once (it re-evaluates the rules), then the `alarms` of each live
// status event. History: the server writes every raise and clear to the audit log
// (alarm.raised / alarm.cleared, actor "loa"); GET /api/v1/audit is for admins only and keeps
// its newest 200 entries of every kind, so the history shown is what those hold, paired into
// episodes (raised → cleared).
import { _, N_, api, h, attempt, fmtTime, fmtDuration, zoneName, table, on, may, state } from "../app.js";

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

const kindName = (kind) => (KINDS[kind] ? _(KINDS[kind]) : kind);

export default {
  async render(container) {
    const stops = [];
    const names = new Map(); // endpoint id → {name, zone}

    /** An alarm's subject: an endpoint (with its name and zone), a zone, or what it names. */
    const subject = (id) => {
      const ep = names.get(id);
      if (ep) {
        return h("span", {}, ep.name || id, " ", h("code", {}, id),
          h("small", { class: "muted ep-tel" }, zoneName(ep.zone)));
      }
      if (state.zones.some((z) => z.id === id)) return h("span", {}, zoneName(id), " ", h("code", {}, id));
      return id;
    };

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

    const historyBox = h("div", { "data-testid": "alarms-history" });

    async function loadHistory() {
      const data = await attempt(() => api("GET", "/api/v1/audit"));
      if (!data) return;
      // oldest first, so that each clear closes the raise before it
      const entries = data.audit.filter((e) => e.action === "alarm.raised" || e.action === "alarm.cleared")
        .sort((a, b) => a.at - b.at || a.id - b.id);
      const open = new Map();
      const episodes = [];
      for (const e of entries) {
        const kind = (e.detail && e.detail.kind) || "";
        const key = `${kind}\u0000${e.subject}`;
        if (e.action === "alarm.raised") {
          const ep = { kind, subject: e.subject, detail: (e.detail && e.detail.detail) || "",
            raised: e.at, cleared: null };
          open.set(key, ep);
          episodes.push(ep);
        } else if (open.has(key)) {
          open.get(key).cleared = e.at;
          open.delete(key);
        } else { // raised before the entries read
          episodes.push({ kind, subject: e.subject, detail: "", raised: null, cleared: e.at });
        }
      }
      episodes.sort((a, b) => (b.cleared || b.raised || 0) - (a.cleared || a.raised || 0));
      const now = Date.now() / 1000;
      historyBox.replaceChildren(table([
        { title: _("Alarm"), value: (a) => kindName(a.kind) },
        { title: _("Where"), value: (a) => subject(a.subject) },
        { title: _("Detail"), value: (a) => a.detail || "—" },
        { title: _("Raised"), value: (a) => fmtTime(a.raised) },
        { title: _("Cleared"), value: (a) => (a.cleared ? fmtTime(a.cleared)
          : h("span", { class: "badge error" }, _("still active"))) },
        { title: _("Lasted"), value: (a) => (a.raised ? fmtDuration((a.cleared || now) - a.raised) : "—") },
      ], episodes, { empty: _("No alarm raised or cleared among the newest audit entries.") }));
    }

    const eps = await attempt(() => api("GET", "/api/v1/endpoints"));
    for (const e of (eps && eps.endpoints) || []) names.set(e.id, { name: e.name, zone: e.zone });

    const refresh = h("button", { type: "button", class: "secondary", "data-testid": "alarms-refresh",
      onclick: async () => {
        const data = await attempt(() => api("GET", "/api/v1/alarms"));
        if (data) drawActive(data.alarms);
        if (may("admin")) loadHistory();
      } }, _("Check now"));

    container.append(
      h("section", { class: "card" },
        h("div", { class: "row" }, h("h2", {}, _("Active alarms")), count, refresh),
        activeBox),
      h("section", { class: "card" }, h("h2", {}, _("History")),
        may("admin")
          ? [h("p", { class: "muted" }, _("Every raise and clear is written to the audit log; shown here from its newest 200 entries.")), historyBox]
          : h("p", { class: "muted", "data-testid": "alarms-history-unavailable" },
            _("The history of alarms is kept in the audit log, which only admins read."))));

    const data = await attempt(() => api("GET", "/api/v1/alarms"));
    drawActive((data && data.alarms) || []);
    if (may("admin")) await loadHistory();

    let seen = 0; // the first status may only repeat what GET alarms said
    stops.push(on("status", (status) => {
      if (!status || !Array.isArray(status.alarms)) return;
      const before = lastSig;
      drawActive(status.alarms);
      // an alarm came or went: its raise or clear is in the audit log now
      if (before !== lastSig && may("admin") && seen++ > 0) loadHistory();
    }));

    return () => { for (const stop of stops) stop(); };
  },
};
