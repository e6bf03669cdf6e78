// The reports page (Báo cáo): a commune's report over a period, as tables (hours on air by
// bulletin class and by zone, loudspeaker availability, alerts and their reach, unclean
// stops), with downloads as CSV and as an Excel workbook.
//
// GET /api/v1/reports/{commune}?from=YYYY-MM-DD&to=YYYY-MM-DD (local dates, the end excluded)
// or ?year=YYYY; the same with &format=csv or &format=xlsx for the files.
import {
  _, api, attempt, fmtNumber, h, state, table, toast, N_, TIME_ZONE, fmtTime,
  zoneName, zonesInOrder,
} from "../app.js";

const CLASSES = {
  emergency: N_("emergency"), live: N_("live"), priority: N_("priority"),
  normal: N_("normal"), fill: N_("fill"),
};
// an alert's class and what became of it (loa/control/alerts/model.py)
const ALERT_CLASSES = { normal: N_("normal"), priority: N_("priority"), emergency: N_("emergency") };
const ALERT_STATUS = {
  pending: N_("waiting"), active: N_("on air"), completed: N_("completed"),
  cancelled: N_("cancelled"), expired: N_("expired"),
};
const word = (map, key) => (map[key] ? _(map[key]) : (key || "—"));
const INDENT = "\u00a0\u00a0\u00a0"; // a level of the zone tree in a list (read as nothing)

/** Today's date at the station, as YYYY-MM-DD. */
function stationToday() {
  return new Intl.DateTimeFormat("en-CA", { timeZone: TIME_ZONE, year: "numeric",
    month: "2-digit", day: "2-digit" }).format(new Date());
}

/** YYYY-MM-DD plus `days` (calendar arithmetic, no time zone involved). */
function addDays(date, days) {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

/** A unix time as the station's local date. */
const fmtDate = (unix) => new Intl.DateTimeFormat(state.lang === "en" ? "en-GB" : "vi-VN",
  { timeZone: TIME_ZONE, year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date(unix * 1000));

// time on air as h:mm:ss (a 10 s alert is 0:00:10, not 0,00 h); a percentage
function spent(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  const two = (n) => String(n).padStart(2, "0");
  return `${Math.floor(s / 3600)}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
}
const pct = (v) => (v === null || v === undefined ? "—" : `${fmtNumber(v, { max: 1 })}%`);

/** The file name a Content-Disposition header gives (RFC 6266: filename* first), or "". */
function filenameOf(header) {
  if (!header) return "";
  const star = /filename\*\s*=\s*[^']*'[^']*'([^;]+)/i.exec(header);
  if (star) {
    try { return decodeURIComponent(star[1].trim()); } catch { /* the plain one, then */ }
  }
  const plain = /filename\s*=\s*"?([^";]+)"?/i.exec(header);
  return plain ? plain[1].trim() : "";
}

/** Download the file of `link` in the console's language (a plain link would ask in the
 * browser's): fetched with Accept-Language, then saved under the server's file name. */
async function download(event, link) {
  event.preventDefault();
  if (!link.href || link.getAttribute("aria-busy") === "true") return;
  link.setAttribute("aria-busy", "true");
  try {
    const resp = await fetch(link.href, { credentials: "same-origin",
      headers: { "Accept-Language": state.lang } });
    if (!resp.ok) {
      let message = "";
      try { message = (await resp.json()).error; } catch { /* not JSON */ }
      toast(message || _("the server answered {status}", { status: resp.status }), "error");
      return;
    }
    const url = URL.createObjectURL(await resp.blob());
    const a = h("a", { href: url, hidden: true,
      download: filenameOf(resp.headers.get("Content-Disposition")) || link.getAttribute("download") });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (err) {
    toast(err.message || String(err), "error");
  } finally {
    link.removeAttribute("aria-busy");
  }
}

/** Replace `el`'s children with `kids` (nested lists flattened; null and false left out). */
function put(el, ...kids) {
  el.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false));
}

export default {
  render(container) {
    const zones = zonesInOrder();
    const commune = h("select", { name: "commune", "data-testid": "report-commune", required: true },
      zones.map(({ zone, depth }) => h("option", { value: zone.id },
        `${INDENT.repeat(depth)}${zone.name || zone.id}`)));
    // a commune by default: the user's own scope if it is one zone, else the first zone below
    // the root (the tree's second level)
    const scope = state.session && state.session.scope;
    const pick = zones.find(({ zone }) => zone.id === scope) || zones.find(({ depth }) => depth === 1) || zones[0];
    if (pick) commune.value = pick.zone.id;

    const today = stationToday();
    const kind = h("select", { name: "period", "data-testid": "report-period" },
      h("option", { value: "month" }, _("This month")),
      h("option", { value: "last-month" }, _("Last month")),
      h("option", { value: "year" }, _("A calendar year")),
      h("option", { value: "range" }, _("From … to …")));
    const year = h("input", { type: "number", name: "year", min: "2000", max: "2200",
      value: today.slice(0, 4), "data-testid": "report-year" });
    const from = h("input", { type: "date", name: "from", value: `${today.slice(0, 8)}01`,
      "data-testid": "report-from" });
    const to = h("input", { type: "date", name: "to", value: today, "data-testid": "report-to" });
    const yearLabel = h("label", {}, _("Year"), year);
    const fromLabel = h("label", {}, _("From (date)"), from);
    const toLabel = h("label", {}, _("To (date, included)"), to);

    const csv = h("a", { class: "button secondary", "data-testid": "report-csv",
      onclick: (e) => download(e, csv) }, _("Download CSV"));
    const xlsx = h("a", { class: "button secondary", "data-testid": "report-xlsx",
      onclick: (e) => download(e, xlsx) }, _("Download Excel"));
    const out = h("div", { "data-testid": "report-table", "aria-live": "polite" });

    /** The period's query (the end excluded), or null with a message. */
    function period() {
      if (kind.value === "year") return year.value ? { year: year.value } : null;
      if (kind.value === "month") {
        const start = `${today.slice(0, 8)}01`;
        const [y, m] = today.split("-").map(Number);
        return { from: start, to: m === 12 ? `${y + 1}-01-01` : `${y}-${String(m + 1).padStart(2, "0")}-01` };
      }
      if (kind.value === "last-month") {
        const [y, m] = today.split("-").map(Number);
        const start = m === 1 ? `${y - 1}-12-01` : `${y}-${String(m - 1).padStart(2, "0")}-01`;
        return { from: start, to: `${today.slice(0, 8)}01` };
      }
      if (!from.value || !to.value) return null;
      return { from: from.value, to: addDays(to.value, 1) };
    }

    function query(format) {
      const p = period();
      if (!p) return null;
      const q = new URLSearchParams(p);
      if (format) q.set("format", format);
      return `/api/v1/reports/${encodeURIComponent(commune.value)}?${q}`;
    }

    function syncForm() {
      yearLabel.hidden = kind.value !== "year";
      fromLabel.hidden = toLabel.hidden = kind.value !== "range";
      const name = commune.value || "bao-cao";
      for (const [link, format] of [[csv, "csv"], [xlsx, "xlsx"]]) {
        const url = query(format);
        if (url) {
          link.href = url;
          link.setAttribute("download", `bao-cao-${name}.${format}`);
          link.removeAttribute("aria-disabled");
        } else {
          link.removeAttribute("href");
          link.setAttribute("aria-disabled", "true");
        }
      }
    }

    function draw(r) {
      // seconds on air (from the hours, for a server that does not give them)
      const secs = r.on_air_seconds || {
        by_class: Object.fromEntries(Object.entries(r.on_air_hours.by_class).map(([c, v]) => [c, v * 3600])),
        total_without_fill: r.on_air_hours.total_without_fill * 3600,
        by_zone: Object.fromEntries(Object.entries(r.on_air_hours.by_zone).map(([z, cl]) =>
          [z, Object.fromEntries(Object.entries(cl).map(([c, v]) => [c, v * 3600]))])),
      };
      const by = secs.by_class;
      const zoneIds = Object.keys(secs.by_zone);
      const classes = Object.keys(CLASSES);
      const online = (e) => (e.online_s === undefined ? e.online_h * 3600 : e.online_s);
      // what an alert said; what it played when it said no words
      const alertName = (a) => (a.title ? a.title
        : a.content === "live" ? _("live from {mount}", { mount: `/live/${a.mount || "studio"}` })
          : a.content === "tone" ? _("the attention tone alone") : "—");
      put(out,
        h("h2", {}, _("{commune}: {start} to {end}", {
          commune: r.commune.name || r.commune.id,
          // the end is excluded: the last day is the one before it
          start: fmtDate(r.period.start), end: fmtDate(r.period.end - 1) })),
        r.commune.admin_code ? h("p", { class: "muted" },
          _("Administrative code {code}", { code: r.commune.admin_code })) : null,
        h("h3", {}, _("Time on air")),
        table([
          { title: _("Bulletin class"), value: (c) => _(CLASSES[c]) },
          { title: _("Time on air (h:mm:ss)"), value: (c) => spent(by[c]) },
          { title: _("Hours"), value: (c) => fmtNumber(r.on_air_hours.by_class[c], { max: 4 }) },
        ], classes),
        h("p", {}, h("strong", {}, _("Total on air (without fill): {time} ({h} h)",
          { time: spent(secs.total_without_fill), h: fmtNumber(r.on_air_hours.total_without_fill, { max: 4 }) }))),
        h("h3", {}, _("Time on air by zone (h:mm:ss)")),
        table([
          { title: _("Zone"), value: (z) => zoneName(z) },
          ...classes.map((c) => ({ title: _(CLASSES[c]), value: (z) => spent(secs.by_zone[z][c]) })),
        ], zoneIds),
        h("h3", {}, _("Availability of the loudspeakers")),
        h("p", {}, _("{n} loudspeakers, available {pct} of the time", {
          n: r.availability.endpoints, pct: pct(r.availability.pct) })),
        table([
          { title: _("Loudspeaker"), value: (e) => h("span", {}, e.name || e.endpoint, " ", h("code", {}, e.endpoint)) },
          { title: _("Zone"), value: (e) => zoneName(e.zone) },
          { title: _("Time online (h:mm:ss)"), value: (e) => spent(online(e)) },
          { title: _("Availability"), value: (e) => pct(e.availability_pct) },
        ], r.availability.per_endpoint, { empty: _("No loudspeaker in this commune.") }),
        h("h3", {}, _("Alerts")),
        h("p", {}, _("{count} alerts; {reached} of {targeted} loudspeakers reached", r.alerts)),
        table([
          { title: _("Sent"), value: (a) => fmtTime(a.created_at) },
          { title: _("Alert"), value: (a) => h("span", { "data-testid": `report-alert-${a.id}` },
            alertName(a)) },
          { title: _("Alert class"), value: (a) => word(ALERT_CLASSES, a.class) },
          { title: _("Status"), value: (a) => word(ALERT_STATUS, a.status) },
          { title: _("Reached"), value: (a) => `${a.reached} / ${a.targeted}` },
          { title: _("Reach"), value: (a) => pct(a.reach_pct) },
          { title: _("Median time to reach"), value: (a) => (a.reach_p50_ms === null
            ? "—" : `${fmtNumber(a.reach_p50_ms, { max: 0 })} ms`) },
        ], r.alerts.list, { empty: _("No alert in this period.") }),
        r.unclean_stops.length ? [
          h("h3", {}, _("Unclean stops")),
          h("p", { class: "muted" }, _("The server stopped without closing these broadcasts (killed, crashed, power cut).")),
          table([
            { title: _("Zone"), value: (s) => zoneName(s.zone) },
            { title: _("Started"), value: (s) => fmtTime(s.started_at) },
            { title: _("Last heard"), value: (s) => fmtTime(s.last_seen_at) },
          ], r.unclean_stops),
        ] : null);
    }

    async function show(e) {
      if (e) e.preventDefault();
      const url = query(null);
      if (!url) { out.replaceChildren(h("p", { class: "error" }, _("Choose the period."))); return; }
      out.replaceChildren(h("p", { class: "muted" }, _("Computing the report…")));
      const r = await attempt(() => api("GET", url));
      if (r && typeof r === "object") draw(r);
      else out.replaceChildren();
    }

    const form = h("form", { class: "card", "data-testid": "report-form" },
      h("div", { class: "row" },
        h("label", {}, _("Commune"), commune),
        h("label", {}, _("Period"), kind),
        yearLabel, fromLabel, toLabel),
      h("div", { class: "row" },
        h("button", { type: "submit", "data-testid": "report-show" }, _("Show the report")), csv, xlsx));
    form.addEventListener("submit", show);
    form.addEventListener("input", syncForm);
    form.addEventListener("change", syncForm);
    syncForm();

    if (!zones.length) {
      container.append(h("p", { class: "empty" }, _("No zone in your scope.")));
      return undefined;
    }
    container.append(form, h("section", { class: "card" }, out));
    show();
    return undefined;
  },
};
