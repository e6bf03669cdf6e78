// The loudspeakers page (Cụm loa): volume and power per zone and per endpoint with each
// command's acknowledgements as they arrive, the endpoint table, a map of the endpoints by
// their coordinates (inline SVG: no tile server, no internet), and CSV import and export.
//
// Reads GET /api/v1/zones, GET /api/v1/endpoints; acts with POST /api/v1/zones/{zone}/commands
// and POST /api/v1/endpoints/{id}/commands (202 with the batch's commands), then polls
// GET /api/v1/commands?batch=… once a second until every command of the batch is done (no
// event carries acknowledgements). The live status stream's per-zone online counts trigger a
// fresh endpoint list when they change. A CSV file is checked by the server first (POST
// /api/v1/endpoints.csv?dry_run=1: what it would add and change, or its errors by line), and
// imported only once the check found nothing wrong.
import {
  _, api, askFirst, attempt, fmtNumber, h, may, on, state, table, toast, ApiFailure, N_, fmtTime,
  zoneName, zonesInOrder,
} from "../app.js";

// fewer rows a page on a phone, where each row reads as a card
const PAGE_SIZE = window.matchMedia("(max-width: 600px)").matches ? 20 : 50;
const POLL_MS = 1000;
const TRACK_LIMIT_MS = 10 * 60 * 1000; // stop following a batch after this (commands expire)
const BIG_BATCH = 200; // a batch this large is followed by its counts, not endpoint by endpoint
const FINAL = new Set(["acked", "failed", "expired", "superseded", "cancelled"]);
const SVG = "http://www.w3.org/2000/svg";
const REFRESH_MS = 300; // a fresh endpoint list this long after a command or an answer
const INDENT = "\u00a0\u00a0\u00a0"; // a level of the zone tree in a list (read as nothing)
const MAP_NEAR_PX = 18; // points closer than this on the map are one marker, with a count

// what a command's status says to an operator, and how it looks
const STATUS = {
  pending: [N_("waiting for the loudspeaker"), "warn"],
  sent: [N_("sent"), "warn"],
  acked: [N_("acknowledged"), "ok"],
  failed: [N_("refused"), "error"],
  expired: [N_("not acknowledged"), "error"],
  superseded: [N_("replaced by a newer command"), ""],
  cancelled: [N_("cancelled"), ""],
};

/** Whether the user's scope is the whole zone tree (what a CSV import needs). */
function wholeTree() {
  const scope = state.session && state.session.scope;
  if (scope === "*") return true;
  const roots = state.zones.filter((z) => !z.parent);
  return roots.length === 1 && roots[0].id === scope;
}

/** The zone and the zones below it. */
function subtree(zoneId) {
  const out = new Set([zoneId]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const z of state.zones) {
      if (z.parent && out.has(z.parent) && !out.has(z.id)) { out.add(z.id); grew = true; }
    }
  }
  return out;
}

/** Replace `el`'s children with `kids` (nested lists flattened; null and false left out). */
function put(el, ...kids) {
  el.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false));
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) el.append(child);
  }
  return el;
}

/** A slider with its value beside it; returns {element, input}. */
function volumeSlider(value, label, testid) {
  const out = h("output", { class: "ep-vol-value" }, `${value}%`);
  const input = h("input", {
    type: "range", min: "0", max: "100", step: "5", value: String(value),
    "aria-label": label, "data-testid": testid,
    oninput: () => { out.textContent = `${input.value}%`; },
  });
  return { element: h("span", { class: "ep-vol" }, input, out), input };
}

// --- CSV: the server checks the file (a dry run) and says what it would do, by line ---

// the fields a line of the import may change, as the preview names them
const FIELDS = {
  name: N_("name"), zone: N_("zone"), lat: N_("latitude"), lon: N_("longitude"),
  address: N_("address"), admin_code: N_("administrative code"),
};

/** A field's value as the preview shows it. */
function shown(field, value) {
  if (value === null || value === undefined || value === "") return "∅";
  return field === "zone" ? `${zoneName(value)} (${value})` : String(value);
}

function download(name, text, type = "text/csv") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: name, class: "button secondary",
    "data-testid": "csv-passwords" }, _("Download the new loudspeakers' MQTT passwords"));
  // the link stays usable while the page is open; the URL is freed when it is left
  return { element: a, free: () => URL.revokeObjectURL(url) };
}

export default {
  async render(container) {
    const timers = new Set();
    const stops = [];
    let stopped = false; // the page was left: no more timers
    const urls = [];
    let endpoints = [];
    let page = 0;
    let filter = { text: "", zone: "", online: "" };

    // --- zones: volume and power, with the acknowledgements of each command below ---

    const zonesBox = h("div", { class: "ep-zones", "data-testid": "zone-controls" });
    const acksList = h("ul", { class: "ep-acks", "data-testid": "command-acks",
      "aria-live": "polite" });
    const acksSection = h("section", { class: "card", hidden: true },
      h("h2", {}, _("Commands and acknowledgements")), acksList);

    const tracked = new Map(); // batch → {started, size, update(commands, summary), done()}
    let polling = false; // a poll is waiting or running: one at a time

    function pollSoon() {
      if (stopped || polling || !tracked.size) return;
      polling = true;
      const timer = setTimeout(async () => {
        timers.delete(timer);
        let refresh = false;
        await Promise.all([...tracked.entries()].map(async ([batch, t]) => {
          // a big batch (a district's fleet) by its counts only: its list would weigh
          // hundreds of kB a second
          const big = t.size > BIG_BATCH;
          try {
            const data = await api("GET", `/api/v1/commands?batch=${encodeURIComponent(batch)}` +
              (big ? "&summary=1" : ""));
            t.update(big ? [] : data.commands, data.summary);
            const open = Object.entries(data.summary).filter(([k]) => !FINAL.has(k))
              .reduce((n, [, v]) => n + v, 0);
            if (!open || Date.now() - t.started > TRACK_LIMIT_MS) {
              tracked.delete(batch);
              t.done();
              refresh = true;
            }
          } catch (err) {
            if (err instanceof ApiFailure && err.status === 404) tracked.delete(batch);
          }
        }));
        polling = false;
        if (refresh && !stopped) loadEndpoints(); // the state the commands brought
        pollSoon();
      }, POLL_MS);
      timers.add(timer);
    }

    // the last command's outcome beside the control that sent it, by "zone:<id>" or
    // "endpoint:<id>" (kept here: the rows are drawn anew with each endpoint list)
    const results = new Map();
    const resultLine = (key) => {
      const r = results.get(key);
      const el = h("p", { class: `ep-result ${r && r.done ? "done" : ""}`, role: "status",
        "data-result": key, "data-testid": `result-${key.replace(":", "-")}` });
      if (r) el.textContent = r.text;
      return el;
    };
    const showResult = (key, text, done) => {
      results.set(key, { text, done });
      for (const el of container.querySelectorAll(`[data-result="${CSS.escape(key)}"]`)) {
        if (el.textContent !== text) el.textContent = text;
        el.classList.toggle("done", done);
      }
    };

    // the endpoint list again soon (once for a burst): what the commands changed
    let refreshing = null;
    const refreshSoon = () => {
      if (refreshing || stopped) return;
      refreshing = setTimeout(() => {
        timers.delete(refreshing);
        refreshing = null;
        if (!stopped) loadEndpoints();
      }, REFRESH_MS);
      timers.add(refreshing);
    };

    /** Follow a command's answer (202 {batch, commands}) until every endpoint is done;
     * `where`: the key of the control's result line ("zone:<id>", "endpoint:<id>"). */
    function follow(title, answer, where) {
      acksSection.hidden = false;
      refreshSoon(); // the setting is the zone's (or the endpoint's) from now on
      const when = h("span", { class: "muted" }, fmtTime(Date.now() / 1000, { date: false }));
      const summaryText = h("span", { class: "ep-ack-summary", "data-testid": "ack-summary" });
      const items = h("ul", { class: "ep-ack-items" });
      const li = h("li", { class: "ep-ack", "data-testid": `command-${answer.batch || "none"}`,
        "data-batch": answer.batch || "" },
      h("div", { class: "row" }, h("strong", {}, title), when, summaryText), items);
      acksList.prepend(li);
      while (acksList.children.length > 20) acksList.lastChild.remove();
      if (!answer.commands.length) {
        summaryText.textContent = _("no loudspeaker in this zone yet: the setting is kept for those that join");
        if (where) showResult(where, `${title} — ${summaryText.textContent}`, true);
        return;
      }
      const rows = new Map();
      const perEndpoint = answer.commands.length <= BIG_BATCH; // else by its counts alone
      // text set only when it changes: the list is a live region, read out on each change
      const say = (el, text) => { if (el.textContent !== text) el.textContent = text; };
      let lastCounts = "";
      const update = (commands, summary) => {
        const counts = summary ? { ...summary } : {};
        for (const c of commands) {
          if (!summary) counts[c.status] = (counts[c.status] || 0) + 1;
          if (!perEndpoint) continue;
          let row = rows.get(c.endpoint);
          if (!row) {
            const badge = h("span", { class: "badge" });
            row = { badge, li: h("li", { "data-testid": `ack-${c.endpoint}` },
              h("span", {}, endpointName(c.endpoint)), " ", badge) };
            rows.set(c.endpoint, row);
            items.append(row.li);
          }
          const [text, kind] = STATUS[c.status] || [c.status, ""];
          row.li.dataset.status = c.status;
          row.badge.className = `badge ${kind}`;
          say(row.badge, _(text) + (c.error ? ` — ${c.error}` : "") +
            (c.ack_ms !== null && c.ack_ms !== undefined ? ` (${fmtNumber(c.ack_ms, { max: 0 })} ms)` : ""));
        }
        const total = Object.values(counts).reduce((n, v) => n + v, 0);
        const failed = (counts.failed || 0) + (counts.expired || 0);
        let text = _("{acked} of {total} acknowledged", { acked: counts.acked || 0, total });
        if (failed) text += " · " + _("{n} failed", { n: failed });
        say(summaryText, text);
        li.dataset.acked = String(counts.acked || 0);
        li.dataset.total = String(total);
        const open = Object.entries(counts).filter(([k]) => !FINAL.has(k))
          .reduce((n, [, v]) => n + v, 0);
        if (where) showResult(where, `${title} — ${text}`, !open);
        // an answer came: the endpoints' state (the table) has changed with it
        const key = JSON.stringify(counts);
        if (lastCounts && key !== lastCounts) refreshSoon();
        lastCounts = key;
      };
      update(answer.commands);
      if (answer.commands.every((c) => FINAL.has(c.status))) { li.classList.add("done"); return; }
      tracked.set(answer.batch, {
        started: Date.now(), size: answer.commands.length, update,
        done: () => li.classList.add("done"),
      });
      pollSoon();
    }

    async function zoneCommand(zone, body, title) {
      const where = `zone:${zone.id}`;
      showResult(where, _("{command} — sending…", { command: title }), false);
      const answer = await attempt(() => api("POST",
        `/api/v1/zones/${encodeURIComponent(zone.id)}/commands`, body));
      if (answer) follow(title, answer, where);
      else showResult(where, _("{command} — not sent", { command: title }), true);
      return answer;
    }

    async function endpointCommand(ep, body, title) {
      const where = `endpoint:${ep.id}`;
      showResult(where, _("{command} — sending…", { command: title }), false);
      const answer = await attempt(() => api("POST",
        `/api/v1/endpoints/${encodeURIComponent(ep.id)}/commands`, body));
      if (answer) follow(title, answer, where);
      else showResult(where, _("{command} — not sent", { command: title }), true);
      return answer;
    }

    function counts(zoneId) {
      const zones = subtree(zoneId);
      const eps = endpoints.filter((e) => zones.has(e.zone));
      return { registered: eps.length, online: eps.filter((e) => e.presence.online).length };
    }

    /** Redraw `box` with `draw()`, keeping the keyboard's place: the control that had the
     * focus (found again by its data-testid) gets it back, a slider with its value. */
    function keepFocus(box, draw) {
      const el = document.activeElement;
      const id = el && box.contains(el) ? el.dataset.testid : null;
      const value = id && el.type === "range" ? el.value : null;
      draw();
      if (!id) return;
      const again = box.querySelector(`[data-testid="${CSS.escape(id)}"]`);
      if (!again) return;
      if (value !== null) { again.value = value; again.dispatchEvent(new Event("input")); }
      again.focus({ preventScroll: true });
    }

    function drawZones() {
      const rows = zonesInOrder().map(({ zone, depth }) => {
        const n = counts(zone.id);
        const name = zone.name || zone.id;
        const head = h("div", { class: "ep-zone-name" },
          h("strong", {}, name), " ", h("code", {}, zone.id), " ",
          h("span", { class: `badge ${n.registered && n.online === n.registered ? "ok" : n.online ? "warn" : ""}`,
            "data-testid": `zone-online-${zone.id}` },
          _("{online} of {registered} online", n)));
        const controls = [];
        if (may("operate")) {
          const slider = volumeSlider(zone.volume_pct ?? 70,
            _("Volume of {zone}", { zone: name }), `zone-volume-${zone.id}`);
          controls.push(slider.element,
            h("button", { type: "button", "data-testid": `zone-volume-set-${zone.id}`,
              onclick: async () => {
                const pct = Number(slider.input.value);
                const answer = await zoneCommand(zone, { op: "volume", volume_pct: pct },
                  _("Volume for {zone}: {pct}%", { pct, zone: name }));
                if (answer) zone.volume_pct = pct;
              } }, _("Set volume")),
            h("button", { type: "button", class: "secondary", "data-testid": `zone-power-on-${zone.id}`,
              onclick: () => zoneCommand(zone, { op: "power", on: true },
                _("Power on for {zone}", { zone: name })) }, _("Power on")),
            h("button", { type: "button", class: "secondary", "data-testid": `zone-power-off-${zone.id}`,
              onclick: (e) => askFirst(e.currentTarget,
                _("Power off every loudspeaker of {zone}?", { zone: name }), _("Power off"),
                () => zoneCommand(zone, { op: "power", on: false },
                  _("Power off for {zone}", { zone: name }))) }, _("Power off")));
        } else {
          controls.push(h("span", {}, _("Volume {pct}%", { pct: zone.volume_pct ?? "—" })));
        }
        // the volume the zone's loudspeakers rise to during an alert: a zone setting (PATCH),
        // applied by the server when an alert plays, so there is nothing to acknowledge now
        let alertVolume = null;
        if (may("operate")) {
          const summary = h("summary", {}, _("Alert volume: {pct}%", { pct: zone.alert_volume_pct ?? 100 }));
          const slider = volumeSlider(zone.alert_volume_pct ?? 100,
            _("Alert volume of {zone}", { zone: name }), `zone-alert-volume-${zone.id}`);
          alertVolume = h("details", { class: "ep-alert-vol" }, summary,
            h("div", { class: "row" }, slider.element,
              h("button", { type: "button", class: "secondary",
                "data-testid": `zone-alert-volume-set-${zone.id}`,
                onclick: async () => {
                  const pct = Number(slider.input.value);
                  const done = await attempt(() => api("PATCH",
                    `/api/v1/zones/${encodeURIComponent(zone.id)}`, { alert_volume_pct: pct }));
                  if (!done) return;
                  // the zones below follow it
                  for (const id of subtree(zone.id)) {
                    const z = state.zones.find((k) => k.id === id);
                    if (z) z.alert_volume_pct = pct;
                  }
                  toast(_("Alert volume for {zone} and the zones below it: {pct}%", { pct, zone: name }));
                  drawZones();
                } }, _("Save"))));
        }
        const row = h("li", { class: "ep-zone", "data-zone": zone.id }, head,
          h("div", { class: "row" }, controls), resultLine(`zone:${zone.id}`), alertVolume);
        row.style.paddingInlineStart = `${depth * 16}px`;
        return row;
      });
      keepFocus(zonesBox, () => zonesBox.replaceChildren(rows.length
        ? h("ul", { class: "ep-zone-list" }, rows)
        : h("p", { class: "empty" }, _("No zone in your scope."))));
    }

    // --- the endpoint table, filtered and paged ---

    const byId = new Map();
    const endpointName = (id) => {
      const ep = byId.get(id);
      return ep && ep.name ? `${ep.name} (${id})` : id;
    };

    const textInput = h("input", { type: "search", "data-testid": "endpoint-filter-text",
      placeholder: _("Name, id or address") });
    const zoneSelect = h("select", { "data-testid": "endpoint-filter-zone" },
      h("option", { value: "" }, _("All zones")),
      zonesInOrder().map(({ zone, depth }) => h("option", { value: zone.id },
        `${INDENT.repeat(depth)}${zone.name || zone.id}`)));
    const onlineSelect = h("select", { "data-testid": "endpoint-filter-online" },
      h("option", { value: "" }, _("Online and offline")),
      h("option", { value: "true" }, _("Online only")),
      h("option", { value: "false" }, _("Offline only")));
    const applyFilter = () => {
      filter = { text: textInput.value.trim().toLowerCase(), zone: zoneSelect.value,
        online: onlineSelect.value };
      page = 0;
      drawTable();
    };
    textInput.addEventListener("input", applyFilter);
    zoneSelect.addEventListener("change", applyFilter);
    onlineSelect.addEventListener("change", applyFilter);
    const filters = h("div", { class: "row ep-filters" },
      h("label", {}, _("Search"), textInput),
      h("label", {}, _("Zone"), zoneSelect),
      h("label", {}, _("State"), onlineSelect));
    const tableBox = h("div", { "data-testid": "endpoint-table" });
    const pager = h("div", { class: "row pager" });

    function filtered() {
      const zones = filter.zone ? subtree(filter.zone) : null;
      return endpoints.filter((e) =>
        (!zones || zones.has(e.zone)) &&
        (!filter.online || String(e.presence.online) === filter.online) &&
        (!filter.text || [e.id, e.name, e.address].some((v) =>
          String(v || "").toLowerCase().includes(filter.text))));
    }

    function telemetry(ep) {
      const t = ep.presence.telemetry || {};
      const parts = [];
      if (t.supply_v !== undefined) parts.push(_("{v} V", { v: fmtNumber(t.supply_v) }));
      if (t.rssi_dbm !== undefined) parts.push(_("signal {dbm} dBm", { dbm: t.rssi_dbm }));
      if (t.buffer_ms !== undefined) parts.push(_("buffer {ms} ms", { ms: fmtNumber(t.buffer_ms, { max: 0 }) }));
      if (t.underruns !== undefined) parts.push(_("{n} underruns", { n: t.underruns }));
      if (t.relay === "tripped") parts.push(_("relay tripped"));
      return h("span", {}, fmtTime(ep.presence.telemetry_at),
        parts.length ? h("small", { class: "muted ep-tel" }, parts.join(" · ")) : null);
    }

    function controls(ep) {
      if (!may("operate")) return "—";
      const label = ep.name || ep.id;
      const slider = volumeSlider(ep.effective_volume_pct,
        _("Volume of {endpoint}", { endpoint: label }), `endpoint-volume-${ep.id}`);
      return h("div", { class: "ep-controls" }, slider.element,
        h("div", { class: "row" },
          h("button", { type: "button", "data-testid": `endpoint-volume-set-${ep.id}`,
            "aria-label": _("Set the volume of {endpoint}", { endpoint: label }),
            onclick: () => endpointCommand(ep, { op: "volume", volume_pct: Number(slider.input.value) },
              _("Volume for {zone}: {pct}%", { pct: slider.input.value, zone: label })) },
          _("Set volume")),
          ep.volume_pct !== null && ep.volume_pct !== undefined ? h("button", {
            type: "button", class: "secondary", "data-testid": `endpoint-volume-follow-${ep.id}`,
            "aria-label": _("Let {endpoint} follow its zone's volume", { endpoint: label }),
            onclick: () => endpointCommand(ep, { op: "volume", volume_pct: null },
              _("{endpoint} follows its zone's volume", { endpoint: label })) },
          _("Follow the zone")) : null,
          h("button", { type: "button", class: "secondary", "data-testid": `endpoint-power-${ep.id}`,
            "aria-label": ep.power_on ? _("Power off {endpoint}", { endpoint: label })
              : _("Power on {endpoint}", { endpoint: label }),
            onclick: () => endpointCommand(ep, { op: "power", on: !ep.power_on },
              ep.power_on ? _("Power off for {zone}", { zone: label })
                : _("Power on for {zone}", { zone: label })) },
          ep.power_on ? _("Power off") : _("Power on"))), resultLine(`endpoint:${ep.id}`));
    }

    const columns = [
      { title: _("Loudspeaker"), value: (e) => h("span", { "data-testid": `endpoint-${e.id}` },
        h("strong", {}, e.name || e.id), " ", h("code", {}, e.id)) },
      { title: _("Zone"), value: (e) => zoneName(e.zone) },
      { title: _("State"), value: (e) => h("span", {},
        h("span", { class: `badge ${e.presence.online ? "ok" : "error"}`,
          "data-testid": `endpoint-online-${e.id}` },
        e.presence.online ? _("online") : _("offline")),
        e.presence.since ? h("small", { class: "muted ep-tel" },
          _("since {time}", { time: fmtTime(e.presence.since) })) : null) },
      { title: _("Volume"), value: (e) => h("span", {},
        `${e.effective_volume_pct}%`, " ",
        h("small", { class: "muted" }, e.volume_pct === null || e.volume_pct === undefined
          ? _("(the zone's)") : _("(its own)")),
        e.muted ? h("span", { class: "badge warn" }, _("muted")) : null,
        e.power_on ? null : h("span", { class: "badge warn" }, _("power off"))) },
      { title: _("Last telemetry"), value: telemetry },
      { title: _("Firmware"), value: (e) =>
        (e.presence.state && e.presence.state.fw) || (e.presence.telemetry && e.presence.telemetry.fw) || "—" },
    ];
    if (may("operate")) columns.push({ title: _("Volume and power"), value: controls });

    function drawTable() {
      const rows = filtered();
      const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
      page = Math.min(page, pages - 1);
      keepFocus(tableBox, () => tableBox.replaceChildren(table(columns,
        rows.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE), { empty: endpoints.length
          ? _("No loudspeaker matches.") : _("No loudspeaker registered in your scope.") })));
      keepFocus(pager, () => pager.replaceChildren(
        h("button", { type: "button", class: "secondary", disabled: page === 0,
          "data-testid": "endpoint-prev", onclick: () => { page -= 1; drawTable(); } },
        _("Previous")),
        h("span", {}, _("Page {page} of {pages} · {count} loudspeakers",
          { page: page + 1, pages, count: rows.length })),
        h("button", { type: "button", class: "secondary", disabled: page >= pages - 1,
          "data-testid": "endpoint-next", onclick: () => { page += 1; drawTable(); } },
        _("Next"))));
    }

    // --- the map: equirectangular over the points' extent, a plain grid of degrees, drawn
    // at the width of its box (1 unit a pixel: markers a finger can hit on a phone too);
    // loudspeakers closer than MAP_NEAR_PX share a marker with their count, split green and
    // red by how many are online ---

    const mapBox = h("div", { class: "ep-map", "data-testid": "endpoint-map" });
    const mapList = h("div", { class: "ep-map-list", "aria-live": "polite",
      "data-testid": "endpoint-map-list" });

    function niceStep(span) {
      const steps = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10];
      return steps.find((s) => span / s <= 6) || 20;
    }

    /** Show the endpoint `e` in the table (the filter set to it). */
    function pickEndpoint(e) {
      textInput.value = e.id;
      applyFilter();
      tableBox.scrollIntoView({ behavior: "smooth", block: "start" });
    }

    /** The loudspeakers of a shared marker, as buttons that show each in the table. */
    function listCluster(group) {
      mapList.replaceChildren(h("p", {}, _("{n} loudspeakers at this place:", { n: group.length })),
        h("ul", { class: "plain ep-map-members" }, group.map((e) => h("li", {},
          h("button", { type: "button", class: "secondary small", "data-testid": `map-member-${e.id}`,
            onclick: () => pickEndpoint(e) }, e.name || e.id),
          " ", h("span", { class: `badge ${e.presence.online ? "ok" : "error"}` },
            e.presence.online ? _("online") : _("offline"))))));
    }

    /** A marker's disc: whole green or red, or split by the share of those online. */
    function disc(cx, cy, r, online, total) {
      if (online === total || online === 0) {
        return [svg("circle", { cx, cy, r, class: online ? "on" : "off" })];
      }
      const turn = (online / total) * 2 * Math.PI;
      const x1 = cx + r * Math.sin(turn), y1 = cy - r * Math.cos(turn);
      const large = turn > Math.PI ? 1 : 0;
      return [
        svg("circle", { cx, cy, r, class: "off" }),
        svg("path", { class: "on", d: `M ${cx} ${cy} L ${cx} ${cy - r} A ${r} ${r} 0 ${large} 1 ${x1} ${y1} Z` }),
        svg("circle", { cx, cy, r, class: "rim" }),
      ];
    }

    function drawMap() {
      const pts = endpoints.filter((e) => typeof e.lat === "number" && typeof e.lon === "number");
      const missing = endpoints.length - pts.length;
      if (!pts.length) {
        mapBox.replaceChildren(h("p", { class: "empty" },
          _("No loudspeaker has coordinates yet: add lat and lon (CSV import or the API).")));
        mapList.replaceChildren();
        return;
      }
      let [minLat, maxLat] = [Math.min(...pts.map((e) => e.lat)), Math.max(...pts.map((e) => e.lat))];
      let [minLon, maxLon] = [Math.min(...pts.map((e) => e.lon)), Math.max(...pts.map((e) => e.lon))];
      const pad = (a, b) => Math.max((b - a) * 0.12, 0.002);
      const padLat = pad(minLat, maxLat), padLon = pad(minLon, maxLon);
      minLat -= padLat; maxLat += padLat; minLon -= padLon; maxLon += padLon;
      const k = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180); // a degree of longitude, shorter
      // keep the ground's proportions, widening the shorter side to a height/width of
      // 0.35 to 0.55 (0.6 to 1.1 on a narrow screen), so that the map fits without distortion
      mapWidth = Math.round(mapBox.clientWidth);
      const W = Math.round(Math.max(280, Math.min(960, mapWidth || 800)));
      const narrow = W < 560;
      const [lo, hi] = narrow ? [0.6, 1.1] : [0.35, 0.55];
      const ratio = (maxLat - minLat) / ((maxLon - minLon) * k);
      if (ratio > hi) {
        const grow = ((maxLat - minLat) / (hi * k) - (maxLon - minLon)) / 2;
        minLon -= grow; maxLon += grow;
      } else if (ratio < lo) {
        const grow = (lo * (maxLon - minLon) * k - (maxLat - minLat)) / 2;
        minLat -= grow; maxLat += grow;
      }
      const M = narrow ? 52 : 64, B = narrow ? 36 : 44; // room for the axes' labels
      const H = Math.round((W - M - 8) * Math.min(hi, Math.max(lo, ratio)) + B + 8);
      const x = (lon) => M + (lon - minLon) / (maxLon - minLon) * (W - M - 8);
      const y = (lat) => 8 + (maxLat - lat) / (maxLat - minLat) * (H - B - 8);
      const grid = [];
      const lonStep = niceStep((maxLon - minLon) * (narrow ? 1.6 : 1)), latStep = niceStep(maxLat - minLat);
      const digits = (s) => Math.max(0, -Math.floor(Math.log10(s)));
      const deg = (v, step) => `${fmtNumber(v, { max: digits(step), min: digits(step) })}°`;
      for (let v = Math.ceil(minLon / lonStep) * lonStep; v <= maxLon; v += lonStep) {
        grid.push(svg("line", { x1: x(v), x2: x(v), y1: 8, y2: H - B, class: "grid" }),
          svg("text", { x: x(v), y: H - B + 18, class: "axis", "text-anchor": "middle" }, deg(v, lonStep)));
      }
      for (let v = Math.ceil(minLat / latStep) * latStep; v <= maxLat; v += latStep) {
        grid.push(svg("line", { x1: M, x2: W - 8, y1: y(v), y2: y(v), class: "grid" }),
          svg("text", { x: M - 4, y: y(v) + 4, class: "axis", "text-anchor": "end" }, deg(v, latStep)));
      }
      // loudspeakers closer than MAP_NEAR_PX to a marker join it (the first one's place)
      const groups = [];
      for (const e of [...pts].sort((a, b) => a.id.localeCompare(b.id))) {
        const px = x(e.lon), py = y(e.lat);
        const near = groups.find((g) => Math.hypot(g.x - px, g.y - py) < MAP_NEAR_PX);
        if (near) near.members.push(e);
        else groups.push({ x: px, y: py, members: [e] });
      }
      const markers = groups.map((g) => {
        const online = g.members.filter((e) => e.presence.online).length;
        const one = g.members.length === 1 ? g.members[0] : null;
        const text = one
          ? _("{name}, {zone}: {state}", { name: one.name || one.id, zone: zoneName(one.zone),
            state: one.presence.online ? _("online") : _("offline") })
          : _("{n} loudspeakers here: {online} online, {offline} offline",
            { n: g.members.length, online, offline: g.members.length - online });
        const right = g.x > W * 0.7;
        const r = one ? 8 : 12;
        const el = svg("g", { class: `pt ${one ? "" : "cluster"}`, tabindex: "0", role: "button",
          "aria-label": text, "data-testid": one ? `map-point-${one.id}` : `map-cluster-${g.members[0].id}` },
        svg("title", {}, text),
        disc(g.x, g.y, r, online, g.members.length),
        one ? null : svg("text", { x: g.x, y: g.y + 4, class: "count", "text-anchor": "middle" },
          String(g.members.length)),
        svg("text", { x: right ? g.x - r - 4 : g.x + r + 4, y: g.y + 4, class: "lbl",
          "text-anchor": right ? "end" : "start" }, text));
        const pick = () => (one ? pickEndpoint(one) : listCluster(g.members));
        el.addEventListener("click", pick);
        el.addEventListener("keydown", (ev) => {
          if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pick(); }
        });
        return el;
      });
      const on = pts.filter((e) => e.presence.online).length;
      keepFocus(mapBox, () => mapBox.replaceChildren(
        svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "ep-map-svg",
          role: "group", "aria-label": _("Map of the loudspeakers") }, grid, markers),
        h("p", { class: "row ep-legend" },
          h("span", { class: "dot on" }), _("online: {n}", { n: on }),
          h("span", { class: "dot off" }), _("offline: {n}", { n: pts.length - on }),
          groups.length < pts.length ? h("span", { class: "muted" },
            _("a number: loudspeakers at one place (choose it for the list)")) : null,
          missing ? h("span", { class: "muted" }, _("{n} without coordinates", { n: missing })) : null)));
    }

    // the map follows its box's width (a phone turned, a window resized)
    let mapWidth = 0;
    const onResize = () => {
      const w = Math.round(mapBox.clientWidth);
      if (w && Math.abs(w - mapWidth) > 24) { mapWidth = w; drawMap(); }
    };
    window.addEventListener("resize", onResize);
    stops.push(() => window.removeEventListener("resize", onResize));

    async function loadEndpoints() {
      const data = await attempt(() => api("GET", "/api/v1/endpoints"));
      if (!data) return;
      endpoints = data.endpoints.sort((a, b) => a.zone.localeCompare(b.zone) || a.id.localeCompare(b.id));
      byId.clear();
      for (const e of endpoints) byId.set(e.id, e);
      drawZones();
      drawTable();
      drawMap();
    }

    // --- CSV import (admins of the whole tree) and export ---

    function csvSection() {
      const exportLink = h("a", { href: "/api/v1/endpoints.csv", download: "cum-loa.csv",
        class: "button secondary", "data-testid": "csv-export" }, _("Export as CSV"));
      const section = h("section", { class: "card" }, h("h2", {}, _("CSV import and export")),
        h("p", { class: "row" }, exportLink));
      if (!may("admin")) return section;
      if (!wholeTree()) {
        section.append(h("p", { class: "muted" },
          _("An import changes the whole registry: only an admin of the whole tree imports.")));
        return section;
      }
      const file = h("input", { type: "file", accept: ".csv,text/csv,.txt", "data-testid": "csv-file" });
      const preview = h("div", { class: "ep-csv-preview", "data-testid": "csv-preview",
        "aria-live": "polite" });
      const result = h("div", { "aria-live": "polite", "data-testid": "csv-result" });
      const importButton = h("button", { type: "button", disabled: true, "data-testid": "csv-import" },
        _("Import"));
      let blob = null;
      let checking = 0; // the newest check: the answer for a file chosen before is dropped

      /** The errors of a refused file (dry run or import), by line, as the server said them. */
      const errorList = (err) => {
        const errors = (err instanceof ApiFailure && Array.isArray(err.data.errors)) ? err.data.errors : [];
        const total = (err instanceof ApiFailure && err.data.error_count) || errors.length;
        return [
          h("p", { class: "error", role: "alert" }, err.message || String(err)),
          errors.length ? h("div", { "data-testid": "csv-errors" }, table([
            { title: _("Line"), value: (e) => (e.line === null || e.line === undefined ? "—" : String(e.line)) },
            { title: _("Error"), value: (e) => h("span", { class: "error", "data-line": String(e.line ?? "") }, e.message) },
          ], errors)) : null,
          total > errors.length ? h("p", { class: "muted" },
            _("The first {shown} of {total} errors are shown.", { shown: errors.length, total })) : null,
          errors.length ? h("p", { class: "muted" },
            _("Nothing is imported: correct these lines and choose the file again.")) : null,
        ];
      };

      /** What the import would do, from the server's dry run. */
      const showPlan = (plan) => {
        const changed = plan.updated.filter((u) => Object.keys(u.changes).length);
        const lines = [
          ...plan.created.map((c) => ({ line: c.line, id: c.id, zone: c.zone, what: h("span", {},
            h("span", { class: "badge ok" }, _("new")), " ", c.name || "") })),
          ...plan.updated.map((u) => {
            const changes = Object.entries(u.changes);
            return { line: u.line, id: u.id, zone: u.zone, what: changes.length
              ? h("span", {}, h("span", { class: "badge warn" }, _("changed")), " ",
                changes.map(([field, c]) => _("{field}: {before} → {after}", {
                  field: FIELDS[field] ? _(FIELDS[field]) : field,
                  before: shown(field, c.from), after: shown(field, c.to) })).join("; "))
              : h("span", { class: "muted" }, _("no change")) };
          }),
        ].sort((a, b) => a.line - b.line);
        const first = lines.slice(0, 50);
        put(preview,
          h("p", { "data-testid": "csv-plan" }, _("The import would add {created}, change {changed} and leave {same} as they are.", {
            created: plan.created.length, changed: changed.length,
            same: plan.updated.length - changed.length })),
          table([
            { title: _("Line"), value: (r) => String(r.line) },
            { title: _("Loudspeaker"), value: (r) => h("code", {}, r.id) },
            { title: _("Zone"), value: (r) => zoneName(r.zone) },
            { title: _("What it does"), value: (r) => r.what },
          ], first, { empty: _("The file has no loudspeaker line.") }),
          lines.length > first.length ? h("p", { class: "muted" },
            _("The first {n} lines are shown.", { n: first.length })) : null);
      };

      file.addEventListener("change", async () => {
        result.replaceChildren();
        preview.replaceChildren();
        importButton.disabled = true;
        const f = file.files[0];
        blob = f || null;
        if (!f) return;
        const mine = ++checking;
        put(preview, h("p", { class: "muted" }, _("Checking the file…")));
        try {
          const plan = await api("POST", "/api/v1/endpoints.csv?dry_run=1", f, { type: f.type || "text/csv" });
          if (mine !== checking) return;
          showPlan(plan);
          importButton.disabled = !(plan.created.length || plan.updated.length);
        } catch (err) {
          if (mine !== checking) return;
          put(preview, errorList(err));
        }
      });

      importButton.addEventListener("click", async () => {
        if (!blob) return;
        importButton.disabled = true;
        result.replaceChildren(h("p", { class: "muted" }, _("Importing…")));
        try {
          const answer = await api("POST", "/api/v1/endpoints.csv", blob,
            { type: blob.type || "text/csv" });
          const parts = [h("p", { class: "ok" }, _("Imported: {created} new, {updated} changed.", {
            created: answer.created.length, updated: answer.updated.length }))];
          if (answer.created.length) {
            const lines = [["id", "username", "password", "client_id", "topic_root", "broker"].join(",")];
            for (const c of answer.created) {
              lines.push([c.username, c.username, c.password, c.client_id, c.topic_root, c.broker]
                .map((v) => `"${String(v).replace(/"/g, '""')}"`).join(","));
            }
            const link = download("cum-loa-mat-khau-mqtt.csv", lines.join("\r\n") + "\r\n");
            urls.push(link.free);
            parts.push(h("p", { class: "warn" },
              _("The new loudspeakers' MQTT passwords are shown this once: download them now.")),
            h("p", {}, link.element));
          }
          result.replaceChildren(...parts);
          blob = null; // imported: choose the file again to import it again
          loadEndpoints();
        } catch (err) {
          // the registry changed since the check (or the server refused): say why, by line
          put(result, errorList(err));
          importButton.disabled = false;
        }
      });

      section.append(
        h("p", { class: "muted" }, _("Columns: id, name, zone, lat, lon, address, admin_code (or their Vietnamese names). All or nothing: any error and no line is imported.")),
        h("div", { class: "row" }, h("label", {}, _("CSV file"), file), importButton),
        preview, result);
      return section;
    }

    // --- the page ---

    const zonesData = await attempt(() => api("GET", "/api/v1/zones"));
    if (zonesData) state.zones = zonesData.zones;

    container.append(
      h("section", { class: "card" }, h("h2", {}, _("Zones")), zonesBox),
      acksSection,
      h("section", { class: "card" }, h("h2", {}, _("Map")), mapBox, mapList),
      h("section", { class: "card" }, h("h2", {}, _("Loudspeakers")), filters, tableBox, pager),
      csvSection());
    await loadEndpoints();

    // live: a new endpoint list when the stream's per-zone online counts change
    let last = null;
    let reloading = null;
    stops.push(on("status", (status) => {
      const byZone = status && status.endpoints_by_zone;
      if (!byZone) return;
      const sig = JSON.stringify(byZone);
      if (last !== null && sig !== last && !reloading && !stopped) {
        reloading = setTimeout(() => { timers.delete(reloading); reloading = null; loadEndpoints(); }, 500);
        timers.add(reloading);
      }
      last = sig;
    }));

    return () => {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      tracked.clear();
      for (const stop of stops) stop();
      for (const free of urls) free();
    };
  },
};
