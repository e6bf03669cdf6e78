// The schedule page (Lịch phát): a week or day calendar of the items that play in the caller's
// scope, an editor with recurrence presets, and iCalendar import and export.
//
// The server does the calendar work, with the scheduler's own RFC 5545 code: the calendar
// draws the slots `GET /api/v1/schedules/occurrences` answers for the days shown, and the
// editor shows the conflicts (and refusals) a dry run of the change answers
// (`POST /api/v1/schedules?dry_run=1`, `PATCH /api/v1/schedules/{id}?dry_run=1`) before it
// is saved. The page reads rules only to fill the editor's presets.
import {
  _, VOICES, api, attempt, fmtDuration, fmtNumber, fmtTime, h, may, state, table, toast, zoneName,
  zoneTree,
  TIME_ZONE,
} from "../app.js";

const MINUTE = 60000;
const DAY = 86400000;
const DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]; // RFC 5545's weekdays, Monday first
const WEEKDAYS = ["MO", "TU", "WE", "TH", "FR"];

// ---- time: "wall" values are a zone's local date and time as milliseconds of a naive
// (UTC-read) Date; instants are plain Unix milliseconds.

const offsetFormats = new Map();

/** The offset (ms) of IANA zone `tz` at the instant `ms`. */
function offsetMs(tz, ms) {
  let f = offsetFormats.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit" });
    offsetFormats.set(tz, f);
  }
  const p = {};
  for (const { type, value } of f.formatToParts(new Date(ms))) p[type] = Number(value);
  return Date.UTC(p.year, p.month - 1, p.day, p.hour % 24, p.minute, p.second) -
    Math.floor(ms / 1000) * 1000;
}

/** The zone `tz` if the browser knows it, else the station's. */
function knownZone(tz) {
  if (!tz) return TIME_ZONE;
  try { offsetMs(tz, 0); return tz; } catch { return TIME_ZONE; }
}

const toWall = (ms, tz = TIME_ZONE) => ms + offsetMs(tz, ms);
function fromWall(wall, tz = TIME_ZONE) {
  const guess = wall - offsetMs(tz, wall);
  return wall - offsetMs(tz, guess);
}
const dayOf = (wall) => Math.floor(wall / DAY) * DAY;
const weekday = (wall) => (new Date(wall).getUTCDay() + 6) % 7; // Monday 0
const isoDate = (wall) => new Date(wall).toISOString().slice(0, 10);
const isoTime = (wall) => new Date(wall).toISOString().slice(11, 19);
const wallOfDate = (text) => Date.parse(`${text}T00:00:00Z`);
const hhmm = (ms) => isoTime(toWall(ms)).slice(0, 5); // station time
const locale = () => (state.lang === "en" ? "en-GB" : "vi-VN");

/** A wall date as the console's language writes it (`opts`: Intl's). */
function wallDate(wall, opts) {
  return new Intl.DateTimeFormat(locale(), { timeZone: "UTC", ...opts }).format(new Date(wall));
}

/** An iCalendar DATE-TIME or DATE ("20261203T060000", "…Z", "20261203") as an instant, read
 * in `tz` when floating; a DATE is its day's start, or its end with `endOfDay`. Null if bad. */
function parseStamp(text, tz, endOfDay = false) {
  const m = /^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z)?)?$/.exec(text.trim());
  if (!m) return null;
  const [, y, mo, d, hh, mi, ss, z] = m;
  const wall = hh === undefined
    ? Date.UTC(+y, mo - 1, +d, 23, 59, 59) - (endOfDay ? 0 : DAY - 1000)
    : Date.UTC(+y, mo - 1, +d, +hh, +mi, +ss);
  if (z) return wall;
  try { return fromWall(wall, tz); } catch { return null; }
}

/** A wall date and time as an iCalendar floating DATE-TIME. */
const stamp = (date, time) => `${date.replaceAll("-", "")}T${time.replaceAll(":", "").padEnd(6, "0")}`;

// ---- rules

/** A rule text (a bare RRULE value, or RRULE/RDATE/EXDATE lines) as {rrules: [{FREQ: …}],
 * rdates: [ms], exdates: [ms], bad: whether some of it was not understood}. */
function parseRule(text, tz) {
  const out = { rrules: [], rdates: [], exdates: [], bad: false };
  if (!text) return out;
  for (let line of text.replace(/\\n/g, "\n").split(/\r?\n/)) {
    line = line.trim();
    if (!line) continue;
    if (!line.includes(":")) line = `RRULE:${line}`;
    const colon = line.indexOf(":");
    const [name, ...params] = line.slice(0, colon).split(";");
    const value = line.slice(colon + 1);
    const key = name.toUpperCase();
    if (key === "RRULE") {
      const rule = {};
      for (const part of value.split(";")) {
        const [k, v = ""] = part.split("=");
        rule[k.toUpperCase()] = v.toUpperCase();
      }
      out.rrules.push(rule);
    } else if (key === "RDATE" || key === "EXDATE") {
      const tzid = params.find((p) => p.toUpperCase().startsWith("TZID="));
      const lineTz = tzid ? tzid.slice(5) : tz;
      for (const v of value.split(",")) {
        const t = parseStamp(v, lineTz);
        if (t === null) out.bad = true;
        else out[key === "RDATE" ? "rdates" : "exdates"].push(t);
      }
    } else {
      out.bad = true;
    }
  }
  return out;
}

// ---- zones

function ancestors(id) {
  const byId = new Map(state.zones.map((z) => [z.id, z]));
  const out = [];
  for (let z = byId.get(id); z && z.parent && !out.includes(z.parent); z = byId.get(z.parent)) {
    out.push(z.parent);
  }
  return out;
}

/** Whether zones overlap: one is the other or lies below it (as the server's zones_overlap). */
function zonesOverlap(a, b) {
  return a.some((x) => b.some((y) => x === y || ancestors(x).includes(y) ||
    ancestors(y).includes(x)));
}

/** The selected zones without those whose parent (or higher) is selected too. */
function coverOf(ids) {
  return ids.filter((z) => !ancestors(z).some((a) => ids.includes(a)));
}

const zonesLabel = (zones) => (zones.length ? zones.map(zoneName).join(", ") : _("no zone yet"));

/** What the server checks before a change: every zone of the item within the caller's scope
 * (a draft without zones is everyone's with the operate right). */
function editable(item) {
  const mine = new Set(state.zones.map((z) => z.id));
  return may("operate") && (item.zones || []).every((z) => mine.has(z));
}

// ---- the editor's recurrence presets

/** The presets of a rule: {mode: once|daily|weekdays|weekly|dates|custom, days, ends:
 * never|until|count, until (a date), untilRaw, count, dates, exceptions (dates), custom}. */
function ruleForm(item) {
  const f = { mode: "once", days: new Set(), ends: "never", until: "", untilRaw: null,
    untilDate: "", count: "", dates: [], exceptions: [], custom: item.rrule || "" };
  if (!item.rrule) return f;
  const tz = knownZone(item.tz);
  const startWall = toWall(Date.parse(item.start), tz);
  const timeOfDay = startWall - dayOf(startWall);
  const custom = () => Object.assign(f, { mode: "custom" });
  const p = parseRule(item.rrule, tz);
  const walls = (list) => list.map((t) => toWall(t, tz));
  const atStartTime = (list) => walls(list).every((w) => w - dayOf(w) === timeOfDay);
  if (p.bad || p.rrules.length > 1 || !atStartTime(p.exdates) || !atStartTime(p.rdates)) {
    return custom();
  }
  f.exceptions = walls(p.exdates).map(isoDate);
  if (!p.rrules.length) {
    f.dates = walls(p.rdates).map(isoDate);
    f.mode = "dates";
    return f;
  }
  const r = p.rrules[0];
  const keys = Object.keys(r);
  if (p.rdates.length || keys.some((k) => !["FREQ", "BYDAY", "UNTIL", "COUNT",
    "INTERVAL", "WKST"].includes(k)) || (r.INTERVAL && r.INTERVAL !== "1") ||
    (r.WKST && r.WKST !== "MO") || (r.UNTIL && r.COUNT)) return custom();
  const days = r.BYDAY ? r.BYDAY.split(",") : [];
  if (days.some((d) => !DAYS.includes(d))) return custom();
  if (r.FREQ === "DAILY" && !days.length) f.mode = "daily";
  else if (r.FREQ === "WEEKLY" && days.length === 5 && WEEKDAYS.every((d) => days.includes(d))) {
    f.mode = "weekdays";
  } else if (r.FREQ === "WEEKLY") {
    f.mode = "weekly";
    f.days = new Set(days.length ? days : [DAYS[weekday(startWall)]]);
  } else return custom();
  if (r.UNTIL) {
    const until = parseStamp(r.UNTIL, tz, true);
    if (until === null) return custom();
    Object.assign(f, { ends: "until", untilRaw: r.UNTIL,
      until: isoDate(toWall(until, tz)), untilDate: isoDate(toWall(until, tz)) });
  } else if (r.COUNT) {
    Object.assign(f, { ends: "count", count: r.COUNT });
  }
  return f;
}

/** The rule text of the presets for a first slot at `time` (HH:MM[:SS]); null for one slot.
 * Throws an Error whose message says what to fix. */
function ruleText(f, time) {
  if (f.mode === "once") return null;
  if (f.mode === "custom") return f.custom.trim() || null;
  const lines = [];
  let rrule = null;
  if (f.mode === "daily") rrule = "FREQ=DAILY";
  else if (f.mode === "weekdays") rrule = `FREQ=WEEKLY;BYDAY=${WEEKDAYS.join(",")}`;
  else if (f.mode === "weekly") {
    if (!f.days.size) throw new Error(_("Choose at least one day of the week."));
    rrule = `FREQ=WEEKLY;BYDAY=${DAYS.filter((d) => f.days.has(d)).join(",")}`;
  }
  if (rrule && f.ends === "until") {
    if (!f.until) throw new Error(_("Give the last date, or choose another end."));
    // an imported UNTIL is kept as it was while its date is not changed
    rrule += `;UNTIL=${f.untilRaw && f.until === f.untilDate ? f.untilRaw
      : stamp(f.until, "23:59:59")}`;
  } else if (rrule && f.ends === "count") {
    const n = Number(f.count);
    if (!Number.isInteger(n) || n < 1) throw new Error(_("Give how many times: 1 or more."));
    rrule += `;COUNT=${n}`;
  }
  const exdates = f.exceptions.map((d) => stamp(d, time));
  if (rrule && !exdates.length) return rrule;
  if (rrule) lines.push(`RRULE:${rrule}`);
  if (f.mode === "dates" && f.dates.length) {
    lines.push(`RDATE:${f.dates.map((d) => stamp(d, time)).join(",")}`);
  }
  if (exdates.length && f.mode !== "dates") lines.push(`EXDATE:${exdates.join(",")}`);
  return lines.join("\n") || null;
}

/** The rule in words. */
function ruleSummary(item) {
  const f = ruleForm(item);
  const dayNames = (list) => list.map((d) => wallDate(Date.UTC(2024, 0, 1 + DAYS.indexOf(d)),
    { weekday: "short" })).join(", ");
  let text;
  if (f.mode === "once") text = _("Once");
  else if (f.mode === "daily") text = _("Every day");
  else if (f.mode === "weekdays") text = _("Monday to Friday");
  else if (f.mode === "weekly") text = _("Weekly on {days}", { days: dayNames([...f.days]) });
  else if (f.mode === "dates") text = _("On chosen dates ({n})", { n: f.dates.length + 1 });
  else return _("Rule: {rule}", { rule: item.rrule });
  // (not inside template literals: the extractor reads no msgid there)
  const more = [text];
  if (f.ends === "until") more.push(_("until {date}", { date: wallDate(wallOfDate(f.until),
    { day: "numeric", month: "numeric", year: "numeric" }) }));
  if (f.ends === "count") more.push(_("{n} times", { n: f.count }));
  if (f.exceptions.length) more.push(_("{n} dates skipped", { n: f.exceptions.length }));
  return more.join(" · ");
}

// ---- content

const CONTENT_KINDS = {
  media: () => _("A file of the library"),
  playlist: () => _("Library files, one after another"),
  text: () => _("Text read aloud"),
  tone: () => _("Test tone"),
  relay: () => _("Another station's stream"),
  file: () => _("A file in the media folder"),
};

function contentSummary(content, media) {
  if (!content) return _("no content yet");
  const title = (id) => (media.find((m) => m.id === id) || {}).title || id;
  switch (content.kind) {
    case "media": return title(content.id);
    case "playlist": return content.items.map(title).join(" → ");
    case "text": {
      const text = content.text.length > 60 ? `${content.text.slice(0, 60)}…` : content.text;
      return _("Text: {text}", { text });
    }
    case "tone": return _("Tone {hz} Hz", { hz: content.freq_hz });
    case "relay": return content.name || content.url;
    case "file": return content.name || content.path;
    default: return content.kind;
  }
}

// ---- the page

export default {
  async render(container) {
    const view = { mode: "week", day: dayOf(toWall(Date.now())), zone: "" };
    let items = [];
    let media = [];
    let dialog = null;
    // the slots of the days shown, as GET schedules/occurrences answered them for `slotsKey`
    let slots = [];
    let slotsKey = "";
    let pendingKey = ""; // the window asked for and not answered yet
    let truncated = false;
    let slotsError = "";
    let asked = 0; // the latest request for slots: an answer to an older one is dropped

    const calendar = h("div", { class: "cal", "data-testid": "schedule-calendar" });
    const rangeLabel = h("strong", { class: "cal-range", "aria-live": "polite" });
    const slotsNote = h("p", { hidden: true, "data-testid": "schedule-slots-note" });
    const drafts = h("div", { "data-testid": "schedule-drafts" });
    const listing = h("div", { "data-testid": "schedule-items" });
    const importResult = h("div", { "data-testid": "schedule-import-result", role: "status" });

    /** The items and the library; `changed`: the items may have changed since their slots
     * were read (a save, a delete, an import), so the slots are asked for again. */
    async function load(changed = true) {
      const [s, m] = await Promise.all([api("GET", "/api/v1/schedules"),
        api("GET", "/api/v1/media").catch(() => ({ media: [] }))]);
      items = s.schedules;
      media = m.media;
      if (changed) slotsKey = pendingKey = "";
      draw();
    }

    /** The days shown: {first (wall ms), ndays, fromMs, toMs (instants), key (the query of
     * their slots)}. */
    function shown() {
      const first = view.mode === "week" ? view.day - weekday(view.day) * DAY : view.day;
      const ndays = view.mode === "week" ? 7 : 1;
      const fromMs = fromWall(first);
      const toMs = fromWall(first + ndays * DAY);
      const q = new URLSearchParams({ from: String(fromMs / 1000), to: String(toMs / 1000) });
      if (view.zone) q.set("zone", view.zone);
      return { first, ndays, fromMs, toMs, key: q.toString() };
    }

    /** Ask the server for the slots of the days shown (its scheduler expands the rules),
     * then draw them. The calendar keeps what it shows until the answer comes. */
    async function loadSlots() {
      const w = shown();
      const mine = ++asked;
      pendingKey = w.key;
      calendar.setAttribute("aria-busy", "true");
      let res = null;
      let failure = null;
      try {
        res = await api("GET", `/api/v1/schedules/occurrences?${w.key}`);
      } catch (err) {
        failure = err;
      }
      if (mine !== asked) return;
      pendingKey = "";
      calendar.removeAttribute("aria-busy");
      slots = res ? res.occurrences : [];
      truncated = !!(res && res.truncated);
      slotsError = failure ? failure.message : "";
      slotsKey = w.key;
      drawCalendar(w);
    }

    const inView = (item) => !view.zone || zonesOverlap([view.zone], item.zones);

    // -- toolbar
    const modeButtons = {};
    const setMode = (mode) => { view.mode = mode; draw(); };
    for (const [mode, label] of [["week", _("Week")], ["day", _("Day")]]) {
      modeButtons[mode] = h("button", { type: "button", class: "secondary",
        "data-testid": `schedule-view-${mode}`, onclick: () => setMode(mode) }, label);
    }
    const step = (n) => { view.day += n * (view.mode === "week" ? 7 : 1) * DAY; draw(); };
    const datePick = h("input", { type: "date", "data-testid": "schedule-date",
      "aria-label": _("Go to date"),
      onchange: (e) => { if (e.target.value) { view.day = wallOfDate(e.target.value); draw(); } } });
    const zoneFilter = h("select", { "data-testid": "schedule-zone-filter",
      onchange: (e) => { view.zone = e.target.value; draw(); } },
    h("option", { value: "" }, _("All zones")),
    state.zones.map((z) => h("option", { value: z.id }, `${z.name || z.id} (${z.id})`)));

    const toolbar = h("div", { class: "row cal-toolbar" },
      h("div", { class: "row", role: "group", "aria-label": _("View") },
        modeButtons.week, modeButtons.day),
      h("div", { class: "row", role: "group", "aria-label": _("Move") },
        h("button", { type: "button", class: "secondary", "data-testid": "schedule-prev",
          "aria-label": _("Earlier"), onclick: () => step(-1) }, "‹"),
        h("button", { type: "button", class: "secondary", "data-testid": "schedule-today",
          onclick: () => { view.day = dayOf(toWall(Date.now())); draw(); } }, _("Today")),
        h("button", { type: "button", class: "secondary", "data-testid": "schedule-next",
          "aria-label": _("Later"), onclick: () => step(1) }, "›")),
      datePick,
      h("label", { class: "inline" }, h("span", {}, _("Zone")), zoneFilter),
      may("operate") ? h("button", { type: "button", "data-testid": "schedule-new",
        onclick: () => openEditor(null) }, _("New item")) : null);

    // -- iCalendar
    const icsInput = h("input", { type: "file", accept: ".ics,text/calendar",
      "data-testid": "schedule-import", id: "schedule-import-file",
      onchange: (e) => importIcs(e.target) });
    const icsCard = h("section", { class: "card", "aria-labelledby": "schedule-ics-h" },
      h("h2", { id: "schedule-ics-h" }, _("iCalendar")),
      h("div", { class: "row" },
        h("a", { class: "button secondary", href: "/api/v1/schedules.ics", download: "loa.ics",
          "data-testid": "schedule-export" }, _("Export (.ics)")),
        may("operate") ? h("label", { class: "inline", for: "schedule-import-file" },
          h("span", {}, _("Import a calendar (.ics)")), icsInput) : null),
      importResult);

    async function importIcs(input) {
      const file = input.files[0];
      if (!file) return;
      importResult.replaceChildren(h("p", { class: "muted" }, _("Importing {name}…",
        { name: file.name })));
      try {
        const res = await api("POST", "/api/v1/schedules.ics", file, { type: "text/calendar" });
        importResult.replaceChildren(...[
          h("p", { class: "ok" }, _("{n} items imported, {d} of them drafts to complete.",
            { n: res.imported.length, d: res.drafts.length })),
          res.refused.length ? h("div", { class: "warn" },
            h("p", {}, _("Refused:")),
            h("ul", {}, res.refused.map((r) => h("li", {}, r)))) : null].filter(Boolean));
        await load();
      } catch (err) {
        importResult.replaceChildren(h("p", { class: "error", role: "alert" }, err.message));
      } finally {
        input.value = "";
      }
    }

    container.append(
      h("section", { class: "card", "aria-label": _("Calendar") },
        toolbar, h("p", {}, rangeLabel), slotsNote, calendar),
      h("section", { class: "card", "aria-labelledby": "schedule-drafts-h" },
        h("h2", { id: "schedule-drafts-h" }, _("Drafts to complete")), drafts),
      h("section", { class: "card", "aria-labelledby": "schedule-items-h" },
        h("h2", { id: "schedule-items-h" }, _("All items")), listing),
      icsCard);

    // -- drawing
    function draw() {
      for (const [mode, btn] of Object.entries(modeButtons)) {
        btn.setAttribute("aria-pressed", String(view.mode === mode));
      }
      const w = shown();
      datePick.value = isoDate(view.day);
      rangeLabel.textContent = w.ndays === 1
        ? wallDate(w.first, { weekday: "long", day: "numeric", month: "long", year: "numeric" })
        : `${wallDate(w.first, { day: "numeric", month: "short" })} – ${wallDate(
          w.first + 6 * DAY, { day: "numeric", month: "short", year: "numeric" })}`;
      if (w.key === slotsKey) drawCalendar(w);
      else if (w.key !== pendingKey) loadSlots();
      drawDrafts();
      drawListing();
    }

    function drawCalendar(w) {
      const byDay = new Map();
      for (const slot of slots) {
        const start = slot.start * 1000;
        if (start < w.fromMs) continue; // began the day before: drawn there
        const key = dayOf(toWall(start));
        if (!byDay.has(key)) byDay.set(key, []);
        byDay.get(key).push(slot);
      }
      slotsNote.hidden = !slotsError && !truncated;
      slotsNote.className = slotsError ? "error" : "warn";
      slotsNote.textContent = slotsError
        ? _("The slots of these days could not be read: {reason}", { reason: slotsError })
        : _("Only the first {n} slots are shown: choose the day view or a zone.",
          { n: slots.length });
      const today = dayOf(toWall(Date.now()));
      calendar.className = `cal ${view.mode}`;
      calendar.replaceChildren(...Array.from({ length: w.ndays }, (_unused, i) => {
        const day = w.first + i * DAY;
        const list = byDay.get(day) || [];
        return h("section", { class: `cal-day${day === today ? " today" : ""}`,
          "data-testid": `schedule-day-${isoDate(day)}`, "aria-label": wallDate(day,
            { weekday: "long", day: "numeric", month: "long" }) },
        h("h3", {}, h("span", {}, wallDate(day, { weekday: "short" })), " ",
          wallDate(day, { day: "numeric", month: "numeric" })),
        list.length ? h("ul", {}, list.map(eventOf)) : h("p", { class: "empty" }, "—"));
      }));
    }

    /** A slot on the calendar; its item's details from the listing (a slot of an item the
     * listing does not have yet reloads both). */
    function eventOf(slot) {
      const item = items.find((i) => i.id === slot.item);
      const detail = view.mode === "day" && item;
      return h("li", {}, h("button", {
        type: "button", class: `event${slot.class === "priority" ? " priority" : ""}`,
        "data-testid": `schedule-event-${slot.item}`, dataset: { start: String(slot.start * 1000) },
        onclick: () => (item ? openEditor(item) : attempt(load)) },
      h("span", { class: "when" }, `${hhmm(slot.start * 1000)}–${hhmm(slot.end * 1000)}`),
      h("span", { class: "what" }, slot.title),
      h("span", { class: "where" }, zonesLabel(slot.zones)),
      detail ? h("span", { class: "muted" }, contentSummary(item.content, media)) : null,
      detail ? h("span", { class: "muted" }, ruleSummary(item)) : null,
      slot.class === "priority" ? h("span", { class: "badge warn" }, _("priority")) : null,
      slot.moved ? h("span", { class: "badge" }, _("moved")) : null));
    }

    function drawDrafts() {
      const list = items.filter((i) => i.draft);
      drafts.replaceChildren(list.length
        ? h("ul", { class: "plain" }, list.map((item) => h("li", { class: "row" },
          h("span", {}, item.title), h("span", { class: "muted" }, ruleSummary(item)),
          editable(item) ? h("button", { type: "button", class: "secondary",
            "data-testid": `schedule-complete-${item.id}`, onclick: () => openEditor(item) },
          _("Complete")) : null)))
        : h("p", { class: "empty" }, _("No drafts: every imported item has its zones and " +
          "content.")));
    }

    function drawListing() {
      const rows = items.filter((i) => !i.draft && inView(i));
      listing.replaceChildren(table([
        { title: _("Title"), value: (i) => i.title },
        { title: _("Zones"), value: (i) => zonesLabel(i.zones) },
        { title: _("Repeats"), value: (i) => ruleSummary(i) },
        { title: _("Next slot"), value: (i) => (i.next ? fmtTime(Date.parse(i.next) / 1000)
          : _("none left")) },
        // minutes, said so (a bare "10:00" reads as a time of day)
        { title: _("Window"), value: (i) => _("{minutes} min",
          { minutes: fmtNumber(i.duration_s / 60, { max: 1 }) }) },
        { title: _("Content"), value: (i) => contentSummary(i.content, media) },
        { title: _("Actions"), value: (i) => h("button", { type: "button", class: "secondary",
          "data-testid": `schedule-open-${i.id}`, onclick: () => openEditor(i) },
        editable(i) ? _("Edit") : _("Details")) },
      ], rows, { empty: _("Nothing is scheduled in your zones.") }));
    }

    // -- the editor
    function openEditor(item) {
      if (dialog) dialog.close();
      const isNew = !item;
      const canEdit = isNew || editable(item);
      const tz = knownZone(item && item.tz);
      const nowWall = toWall(Date.now(), tz);
      const startWall = item ? toWall(Date.parse(item.start), tz)
        : Math.ceil((nowWall + MINUTE) / 3600000) * 3600000; // the next whole hour
      const rf = item ? ruleForm(item) : Object.assign(ruleForm({}), { mode: "daily" });
      let durationTouched = !isNew;
      const error = h("p", { class: "error", role: "alert", "data-testid": "schedule-error" });
      const conflictsBox = h("div", { class: "conflicts", "data-testid": "schedule-conflicts",
        role: "status", "aria-live": "polite" });
      const id = (name) => `sched-${name}`;
      const field = (name, label, input) => {
        input.id = id(name);
        return h("label", { for: id(name) }, h("span", {}, label), input);
      };

      const title = h("input", { required: true, maxlength: 200, value: item ? item.title : "",
        "data-testid": "schedule-title" });
      const tree = zoneTree({ onChange: () => update() });
      tree.element.dataset.testid = "schedule-zones";
      if (item) { // a zone's villages are ticked with it, as a click on it would
        const below = (z) => [z, ...state.zones.filter((k) => k.parent === z).flatMap((k) =>
          below(k.id))];
        tree.set(item.zones.flatMap(below));
      }

      // content
      const content = (item && item.content) || { kind: "media" };
      const kind = h("select", { "data-testid": "schedule-content-kind" },
        Object.entries(CONTENT_KINDS).map(([k, label]) => h("option", { value: k,
          selected: content.kind === k }, label())));
      const mediaLabel = (m) => `${m.title} (${fmtDuration(m.duration_s)})`;
      const mediaPick = h("select", { "data-testid": "schedule-media" },
        h("option", { value: "" }, _("— choose a file —")),
        media.map((m) => h("option", { value: m.id, selected: content.id === m.id },
          mediaLabel(m))));
      const playlistPick = h("select", { multiple: true, size: Math.min(6, media.length || 1),
        "data-testid": "schedule-playlist" },
      media.map((m) => h("option", { value: m.id,
        selected: (content.items || []).includes(m.id) }, mediaLabel(m))));
      const text = h("textarea", { rows: 3, "data-testid": "schedule-text" }, content.text || "");
      // the voices by name, as the alert page offers them (an item's other voice kept)
      const voiceNow = content.voice || "vi";
      const voice = h("select", { "data-testid": "schedule-voice" },
        VOICES.map(([v, label]) => h("option", { value: v }, _(label))),
        VOICES.some(([v]) => v === voiceNow) ? null : h("option", { value: voiceNow }, voiceNow));
      voice.value = voiceNow;
      const tone = h("input", { type: "number", min: 20, max: 20000, step: "any",
        value: content.freq_hz || 1000, "data-testid": "schedule-tone" });
      const relay = h("input", { type: "url", value: content.url || "",
        placeholder: "http://…", "data-testid": "schedule-relay" });
      const path = h("input", { value: content.path || "", "data-testid": "schedule-path" });
      const kindFields = {
        media: h("div", {}, field("media", _("File"), mediaPick),
          media.length ? null : h("p", { class: "muted" }, _("The library is empty: "),
            h("a", { href: "#/media" }, _("upload a file first")))),
        playlist: field("playlist", _("Files (hold Ctrl to choose several)"), playlistPick),
        text: h("div", { class: "grid two" }, field("text", _("Text"), text),
          field("voice", _("Voice"), voice)),
        tone: field("tone", _("Frequency (Hz)"), tone),
        relay: field("relay", _("Stream address"), relay),
        file: field("path", _("File name in the media folder"), path),
      };
      const contentOf = () => {
        switch (kind.value) {
          case "media": return mediaPick.value ? { kind: "media", id: mediaPick.value } : null;
          case "playlist": {
            const ids = [...playlistPick.selectedOptions].map((o) => o.value);
            return ids.length ? { kind: "playlist", items: ids } : null;
          }
          case "text": return text.value.trim()
            ? { kind: "text", text: text.value, voice: voice.value || "vi" } : null;
          case "tone": return { kind: "tone", freq_hz: Number(tone.value) };
          case "relay": return relay.value ? { kind: "relay", url: relay.value.trim() } : null;
          case "file": return path.value ? { kind: "file", path: path.value.trim() } : null;
          default: return null;
        }
      };

      // when
      const date = h("input", { type: "date", required: true, value: isoDate(startWall),
        "data-testid": "schedule-start-date" });
      const time = h("input", { type: "time", required: true,
        step: startWall % MINUTE ? 1 : 60,
        value: isoTime(startWall).slice(0, startWall % MINUTE ? 8 : 5),
        "data-testid": "schedule-start-time" });
      const minutes = h("input", { type: "number", min: 0.1, max: 1440, step: "any",
        required: true, value: item ? +(item.duration_s / 60).toFixed(2) : 5,
        "data-testid": "schedule-duration", oninput: () => { durationTouched = true; } });
      const fitDuration = () => { // the window fits the chosen audio, to the minute above
        if (durationTouched) return;
        const ids = kind.value === "media" ? [mediaPick.value]
          : kind.value === "playlist" ? [...playlistPick.selectedOptions].map((o) => o.value)
            : [];
        const total = ids.reduce((s, i) => s + ((media.find((m) => m.id === i) || {})
          .duration_s || 0), 0);
        if (total > 0) minutes.value = Math.min(1440, Math.max(1, Math.ceil(total / 60)));
      };

      // repeats
      const repeat = h("select", { "data-testid": "schedule-repeat" },
        [["once", _("Does not repeat")], ["daily", _("Every day")],
          ["weekdays", _("Monday to Friday")], ["weekly", _("Weekly on chosen days")],
          ["dates", _("On chosen dates")], ["custom", _("Custom rule (RFC 5545)")]]
          .map(([v, label]) => h("option", { value: v, selected: rf.mode === v }, label)));
      const dayBoxes = h("fieldset", { class: "days" },
        h("legend", {}, _("On these days")),
        DAYS.map((d, i) => h("label", { class: "inline" },
          h("input", { type: "checkbox", value: d, checked: rf.days.has(d),
            "data-testid": `schedule-weekday-${d}`,
            onchange: (e) => { if (e.target.checked) rf.days.add(d); else rf.days.delete(d); update(); } }),
          wallDate(Date.UTC(2024, 0, 1 + i), { weekday: "long" }))));
      const ends = h("select", { "data-testid": "schedule-ends" },
        [["never", _("Never")], ["until", _("On a date")], ["count", _("After a number of times")]]
          .map(([v, label]) => h("option", { value: v, selected: rf.ends === v }, label)));
      const until = h("input", { type: "date", value: rf.until, "data-testid": "schedule-until" });
      const count = h("input", { type: "number", min: 1, step: 1, value: rf.count,
        "data-testid": "schedule-count" });
      const endsBox = h("div", { class: "row" }, field("ends", _("Ends"), ends),
        field("until", _("Last date"), until), field("count", _("Times"), count));
      const dateList = (list, name, label, addLabel) => {
        const input = h("input", { type: "date", "data-testid": `schedule-${name}-date` });
        const chips = h("ul", { class: "chips", "data-testid": `schedule-${name}-list` });
        const drawChips = () => chips.replaceChildren(...list.sort().map((d) => h("li", {},
          h("span", {}, wallDate(wallOfDate(d), { weekday: "short", day: "numeric",
            month: "numeric", year: "numeric" })),
          h("button", { type: "button", class: "secondary small",
            "aria-label": _("Remove {date}", { date: d }),
            onclick: () => { list.splice(list.indexOf(d), 1); drawChips(); update(); } }, "×"))));
        drawChips();
        return h("fieldset", {}, h("legend", {}, label),
          h("div", { class: "row" }, input, h("button", { type: "button", class: "secondary",
            "data-testid": `schedule-${name}-add`, onclick: () => {
              if (input.value && !list.includes(input.value)) list.push(input.value);
              input.value = "";
              drawChips();
              update();
            } }, addLabel)), chips);
      };
      const datesBox = dateList(rf.dates, "extra", _("Also on these dates"), _("Add date"));
      const exceptBox = dateList(rf.exceptions, "exception", _("Skip these dates"),
        _("Add exception"));
      const rule = h("textarea", { rows: 3, "data-testid": "schedule-rule",
        placeholder: "FREQ=WEEKLY;BYDAY=MO,WE,FR" }, rf.custom);
      const ruleBox = field("rule", _("Rule (RRULE, RDATE, EXDATE lines)"), rule);

      // how
      const cls = h("select", { "data-testid": "schedule-class" },
        h("option", { value: "normal", selected: !item || item.class === "normal" },
          _("Ordinary bulletin")),
        h("option", { value: "priority", selected: !!item && item.class === "priority" },
          _("Priority bulletin")));
      const missed = h("select", { "data-testid": "schedule-missed" },
        h("option", { value: "skip", selected: !item || item.missed !== "late" },
          _("Skip it")),
        h("option", { value: "late", selected: !!item && item.missed === "late" },
          _("Play it late")));
      const late = h("input", { type: "number", min: 0, step: 1,
        value: item ? item.late_minutes : 30, "data-testid": "schedule-late" });
      const lateBox = field("late", _("Up to (minutes late)"), late);

      const show = () => {
        for (const [k, el] of Object.entries(kindFields)) el.hidden = k !== kind.value;
        const m = repeat.value;
        dayBoxes.hidden = m !== "weekly";
        endsBox.hidden = !["daily", "weekdays", "weekly"].includes(m);
        until.parentElement.hidden = ends.value !== "until";
        count.parentElement.hidden = ends.value !== "count";
        datesBox.hidden = m !== "dates";
        exceptBox.hidden = ["once", "dates", "custom"].includes(m);
        ruleBox.hidden = m !== "custom";
        lateBox.hidden = missed.value !== "late";
      };

      /** The item as the form has it (the API's JSON); throws an Error saying what to fix. */
      const body = () => {
        Object.assign(rf, { mode: repeat.value, ends: ends.value, until: until.value,
          count: count.value, custom: rule.value });
        const t = time.value.length === 5 ? `${time.value}:00` : time.value;
        if (!date.value || !time.value) throw new Error(_("Give the first date and time."));
        return { title: title.value.trim(), zones: coverOf(tree.selected()),
          start: `${date.value}T${t}`, duration_s: Math.round(Number(minutes.value) * 60),
          rrule: ruleText(rf, t), class: cls.value, content: contentOf(),
          missed: missed.value, late_minutes: Math.max(0, Math.floor(Number(late.value) || 0)) };
      };

      let timer = null;
      let checking = 0; // the latest dry run: an answer to an older one is dropped
      const update = () => {
        show();
        clearTimeout(timer);
        timer = setTimeout(checkConflicts, 300);
      };
      const hint = (text) => conflictsBox.replaceChildren(h("p", { class: "muted" }, text));
      /** Ask the server what saving the form would do (a dry run: the same checks, nothing
       * saved): its refusal, or the items it would overlap with and the next slot. */
      const checkConflicts = async () => {
        let b;
        try { b = body(); } catch (err) { checking += 1; hint(err.message); return; }
        if (!b.zones.length || !b.content || !(b.duration_s > 0)) {
          checking += 1;
          hint(_("Choose the zones and what plays: the server then checks the item for " +
            "overlaps."));
          return;
        }
        const mine = ++checking;
        conflictsBox.setAttribute("aria-busy", "true");
        let res = null;
        let failure = null;
        try {
          res = isNew ? await api("POST", "/api/v1/schedules?dry_run=1", b)
            : await api("PATCH", `/api/v1/schedules/${encodeURIComponent(item.id)}?dry_run=1`, b);
        } catch (err) {
          failure = err;
        }
        if (mine !== checking) return;
        conflictsBox.removeAttribute("aria-busy");
        if (failure) {
          conflictsBox.replaceChildren(h("p", { class: "error",
            "data-testid": "schedule-check-error" },
          _("It cannot be saved like this: {reason}", { reason: failure.message })));
          return;
        }
        const zonesOf = (id) => (items.find((i) => i.id === id) || {}).zones || [];
        conflictsBox.replaceChildren(
          h("p", {}, res.next ? _("Next slot: {time}", { time: fmtTime(Date.parse(res.next) / 1000) })
            : _("No slot starts from now on.")),
          res.conflicts.length
            ? h("div", { class: "warn" }, h("p", {}, _("Overlaps in the next 14 days with:")),
              h("ul", {}, res.conflicts.map((c) => h("li", {
                "data-testid": `schedule-conflict-${c.item}` },
              _("{title} ({zones}) at {time}", { title: c.title,
                zones: zonesLabel(zonesOf(c.item)), time: fmtTime(Date.parse(c.slot) / 1000) })))))
            : h("p", { class: "ok" }, _("No overlap with other items in the next 14 days.")));
      };

      const save = h("button", { type: "submit", "data-testid": "schedule-save" }, _("Save"));
      const cancel = h("button", { type: "button", class: "secondary",
        "data-testid": "schedule-cancel", onclick: () => dialog.close() },
      canEdit ? _("Cancel") : _("Close"));
      const confirmBox = h("div", { class: "row", hidden: true },
        h("span", { class: "warn" }, _("Delete this item and all its slots?")),
        h("button", { type: "button", class: "danger", "data-testid": "schedule-delete-confirm",
          onclick: () => remove() }, _("Delete")),
        h("button", { type: "button", class: "secondary",
          onclick: () => { confirmBox.hidden = true; del.hidden = false; del.focus(); } },
        _("Keep it")));
      const del = !isNew && canEdit ? h("button", { type: "button", class: "danger",
        "data-testid": "schedule-delete",
        onclick: () => { confirmBox.hidden = false; del.hidden = true;
          confirmBox.querySelector("button").focus(); } }, _("Delete")) : null;

      async function remove() {
        try {
          await api("DELETE", `/api/v1/schedules/${encodeURIComponent(item.id)}`);
          toast(_("{title} deleted", { title: item.title }));
          dialog.close();
          await load();
        } catch (err) {
          error.textContent = err.message;
        }
      }

      async function submit(e) {
        e.preventDefault();
        error.textContent = "";
        let b;
        try {
          b = body();
          if (!b.title) throw new Error(_("Give a title."));
          if (!b.zones.length) throw new Error(_("Choose at least one zone."));
          if (!b.content) throw new Error(_("Choose what to play."));
          if (!(b.duration_s > 0 && b.duration_s <= 86400)) {
            throw new Error(_("The window is from 1 minute to 24 hours."));
          }
        } catch (err) {
          error.textContent = err.message;
          return;
        }
        save.disabled = true;
        try {
          const res = isNew ? await api("POST", "/api/v1/schedules", b)
            : await api("PATCH", `/api/v1/schedules/${encodeURIComponent(item.id)}`, b);
          const next = res.next ? fmtTime(Date.parse(res.next) / 1000) : _("none left");
          toast(_("{title} saved; next slot {next}", { title: res.schedule.title, next }));
          if (res.conflicts.length) {
            toast(_("It overlaps with: {titles}", { titles: res.conflicts.map((c) =>
              `${c.title} (${fmtTime(Date.parse(c.slot) / 1000)})`).join("; ") }), "error");
          }
          dialog.close();
          await load();
        } catch (err) {
          error.textContent = err.message;
        } finally {
          save.disabled = false;
        }
      }

      const heading = isNew ? _("New schedule item")
        : canEdit ? _("Edit {title}", { title: item.title }) : item.title;
      const form = h("form", { class: "editor-form", onsubmit: submit, oninput: update,
        onchange: (e) => { if ([kind, mediaPick, playlistPick].includes(e.target)) fitDuration(); update(); } },
      h("h2", { id: "schedule-editor-h" }, heading),
      item && item.draft ? h("p", { class: "warn" }, _("A draft: give it zones and content, " +
        "then it plays.")) : null,
      tz !== TIME_ZONE ? h("p", { class: "muted" }, _("Times of this item are in {zone}.",
        { zone: tz })) : null,
      field("title", _("Title"), title),
      h("fieldset", {}, h("legend", {}, _("Zones")),
        canEdit ? tree.element : h("p", {}, zonesLabel(item.zones))),
      h("fieldset", {}, h("legend", {}, _("Content")), field("kind", _("What plays"), kind),
        Object.values(kindFields)),
      h("fieldset", {}, h("legend", {}, _("When")),
        h("div", { class: "grid three" }, field("date", _("First date"), date),
          field("time", _("Time"), time), field("duration", _("Window (minutes)"), minutes)),
        field("repeat", _("Repeats"), repeat), dayBoxes, endsBox, datesBox, exceptBox, ruleBox,
        item && item.overrides && item.overrides.length
          ? h("p", { class: "muted" }, _("{n} moved slots are kept.",
            { n: item.overrides.length })) : null),
      h("fieldset", {}, h("legend", {}, _("Priority and outages")),
        h("div", { class: "grid three" }, field("class", _("Class"), cls),
          field("missed", _("A slot missed while the server was down"), missed), lateBox)),
      canEdit ? h("fieldset", {}, h("legend", {}, _("Conflicts")), conflictsBox) : null,
      error,
      h("div", { class: "row" }, canEdit ? save : null, cancel, del, confirmBox));
      if (!canEdit) {
        for (const el of form.querySelectorAll("input, select, textarea")) el.disabled = true;
        form.prepend(h("p", { class: "muted" }, _("You can see this item but not change it: " +
          "some of its zones are outside your scope.")));
      }
      dialog = h("dialog", { class: "editor", "aria-labelledby": "schedule-editor-h",
        "data-testid": "schedule-editor" }, form);
      const dlg = dialog;
      dlg.addEventListener("close", () => { clearTimeout(timer); checking += 1; dlg.remove(); });
      container.append(dlg);
      show();
      if (canEdit) checkConflicts();
      dialog.showModal();
      (canEdit ? title : cancel).focus();
    }

    draw();
    await attempt(() => load(false)); // the first draw asked for the slots already
    return () => { if (dialog && dialog.open) dialog.close(); };
  },
};
