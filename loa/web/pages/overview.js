// The overview (Tổng quan): the zone tree with what each zone plays now and at what
// priority (and what waits above it for its source), its level meter, its loudspeakers
// online against registered and a button that plays it in the browser; the sources; the
// active alerts (cancel, with the alert right) and alarms. Live from the `status` and
// `levels` events, with GET /api/v1/status polled once a second whenever no status event
// came for 2 s (no stream yet, or a proxy that drops it).
//
// It also exports what the go-live and alert pages share with it: the status watch, the
// words for priorities, alert classes and statuses, the titles of what plays, and the note
// of what waits for its source.
import {
  _, N_, api, attempt, fmtTime, h, may, on, state, table, toast, zoneName,
} from "../app.js";

const STALE_MS = 2000; // no status event this long: poll the status instead
const POLL_MS = 1000;
const COUNTS_MAX_AGE_MS = 5000; // the endpoint list, when the status lacks the counts
const LEVEL_FLOOR_DB = -60; // the meter's empty end (dBFS)
const LEVEL_STALE_MS = 1500; // no level this long: the meter drops to empty
const MEDIA_MAX_AGE_MS = 30000;

// the priority levels of loa/core/priority.py, highest first: [lowest value, word]
const PRIORITY_WORDS = [
  [100, N_("emergency")],
  [80, N_("district live")],
  [70, N_("commune live")],
  [60, N_("priority bulletin")],
  [50, N_("schedule")],
  [10, N_("fill")],
  [0, N_("idle")],
];

/** The word for a request priority (0-100): the level at or below it (loa/core/priority.py). */
export function priorityWord(priority) {
  for (const [lowest, word] of PRIORITY_WORDS) if (priority >= lowest) return _(word);
  return _("idle");
}

/** The badge class for a priority's weight: emergency red, live and priority amber. */
export function priorityClass(priority) {
  const kind = priority >= 100 ? "error" : priority >= 60 ? "warn" : priority >= 50 ? "ok" : "";
  return `badge ${kind}`;
}

/** A badge with the priority's word (its number in the tooltip), coloured by its weight. */
export function priorityBadge(priority, attrs = {}) {
  return h("span", { class: priorityClass(priority), title: String(priority), ...attrs },
    priorityWord(priority));
}

const CLASS_WORDS = {
  normal: N_("normal"), priority: N_("priority"), emergency: N_("emergency"),
};
/** The word for an alert class (normal, priority, emergency: loa/control/alerts/model.py). */
export function classWord(cls) {
  return CLASS_WORDS[cls] ? _(CLASS_WORDS[cls]) : String(cls);
}

const ALERT_STATUS_WORDS = {
  pending: N_("waiting"), active: N_("on air"), completed: N_("completed"),
  cancelled: N_("cancelled"), expired: N_("expired"),
};
/** The word for an alert status (pending, active, completed, cancelled, expired). */
export function alertStatusWord(status) {
  return ALERT_STATUS_WORDS[status] ? _(ALERT_STATUS_WORDS[status]) : String(status);
}

const ALARM_WORDS = {
  endpoint_offline: N_("loudspeaker offline"),
  zone_silent: N_("zone silent"),
  source_down: N_("source down"),
  underruns: N_("audio dropouts"),
  supply_voltage: N_("supply voltage out of range"),
  relay_fault: N_("protection relay tripped"),
  broker_down: N_("control link (MQTT) lost"),
  loop_lag: N_("server running late"),
  clock_resync: N_("clock resynchronised"),
  disk_full: N_("disk full"),
};

// the subjects of the station's own alarms (loa/monitoring/alarms.py), in words
const ALARM_SUBJECTS = {
  server: N_("the server"), "master clock": N_("the master clock"), "data disk": N_("the data disk"),
};

// the media library's titles by id, for alerts and requests that play a library item
let mediaCache = null;
let mediaAt = 0;

/** The library's titles by id (a Map), fetched at most every 30 s; empty when refused. */
export async function mediaTitles() {
  if (mediaCache && Date.now() - mediaAt < MEDIA_MAX_AGE_MS) return mediaCache;
  try {
    const data = await api("GET", "/api/v1/media");
    mediaCache = new Map(data.media.map((m) => [m.id, m.title || m.filename]));
  } catch {
    mediaCache = mediaCache || new Map();
  }
  mediaAt = Date.now();
  return mediaCache;
}

const shorten = (text, max = 90) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/**
 * What an alert says, for people: a CAP alert's event, the text read aloud, the library
 * item's title, the file's name, the live mount; never its hex id. `titles`: the Map of
 * `mediaTitles()` (optional).
 */
export function alertTitle(alert, titles) {
  const c = alert.content || {};
  if (alert.cap && alert.cap.event) return shorten(String(alert.cap.event));
  if (c.kind === "text" && c.text) return shorten(c.text);
  if (c.kind === "media") return (titles && titles.get(c.id)) || _("A file of the media library");
  if (c.kind === "file" || (c.kind === "media" && c.path)) {
    if (c.name && c.name !== "upload") return c.name;
    return c.name === "upload" ? _("An uploaded recording")
      : String(c.path || "").split("/").pop() || _("A recording");
  }
  if (c.kind === "live" || c.kind === "mount") {
    return _("Live from {mount}", { mount: c.mount || "studio" });
  }
  if (c.kind === "cap_resource") {
    return shorten(c.name || alert.fallback_text || _("A CAP message"));
  }
  if (c.kind === "tone") return _("Attention tone only");
  return alert.fallback_text ? shorten(alert.fallback_text) : _("Alert");
}

/** What a request (of a zone's `requests` in the status) plays, for people. */
export function requestTitle(req, status, titles) {
  const label = req.label || "";
  if (label.startsWith("alert/")) {
    const alert = ((status && status.alerts) || []).find((a) => a.id === label.slice(6));
    return alert ? `${_("Alert")}: ${alertTitle(alert, titles)}` : _("Emergency alert");
  }
  if (label.startsWith("live/")) return _("Live from {mount}", { mount: label.slice(5) });
  const prog = req.programme || {};
  if (prog.kind === "idle") return _("Silence");
  return prog.name || _("A programme");
}

/** What a zone (an item of the status's `zones`) plays now, for people. */
export function onAirTitle(zoneStatus, status, titles) {
  const onAir = zoneStatus.on_air || {};
  const req = (zoneStatus.requests || [])
    .filter((r) => r.programme && r.programme.id === onAir.programme)
    .sort((a, b) => b.priority - a.priority)[0];
  if (req) return requestTitle(req, status, titles);
  if (!onAir.priority) return _("Silence");
  return onAir.name || _("A programme");
}

/**
 * The requests of a zone (an item of the status's `zones`) above what it plays that cannot
 * play now (a live mount whose source has not connected, or dropped), highest first: the
 * rule of GET /api/v1/zones's `waiting` (loa/api/zones.py `_zone_view`). Such a request
 * plays again as soon as its source comes back, until it is released.
 */
export function waitingRequests(zoneStatus) {
  const onAir = zoneStatus.on_air || {};
  const prio = Number.isInteger(onAir.priority) ? onAir.priority : null;
  return (zoneStatus.requests || [])
    .filter((r) => r.programme && r.programme.available === false &&
      (prio === null || r.priority > prio))
    .sort((a, b) => b.priority - a.priority || a.id - b.id);
}

/**
 * The note of a zone whose requests wait for their source (`waitingRequests`), or null:
 * {text: "waiting for its source: live/studio [80]" (each request's label, as `loa zones`
 * names it, an alert's title rather than its id, and its priority), tip: each one's title
 * and priority word, a line each}.
 */
export function waitingNote(zoneStatus, status, titles) {
  const waiting = waitingRequests(zoneStatus);
  if (!waiting.length) return null;
  const name = (r) => (r.label && !r.label.startsWith("alert/") ? r.label
    : requestTitle(r, status, titles));
  return {
    text: _("waiting for its source: {title}",
      { title: waiting.map((r) => `${name(r)} [${r.priority}]`).join(", ") }),
    tip: waiting.map((r) => `${requestTitle(r, status, titles)} · ${priorityWord(r.priority)}`)
      .join("\n"),
  };
}

/** The ids of `ids` that have no ancestor in `ids` (a parent's request covers its children). */
export function topMost(ids) {
  const chosen = new Set(ids);
  const parentOf = new Map(state.zones.map((z) => [z.id, z.parent]));
  return ids.filter((id) => {
    for (let p = parentOf.get(id); p; p = parentOf.get(p)) if (chosen.has(p)) return false;
    return true;
  });
}

/**
 * The loudspeakers of the subtrees of `ids`, each zone counted once: {registered, online,
 * connected}, from `byZone` (the status's `endpoints_by_zone`: each zone's count covers its
 * subtree; `online`: on the control link, MQTT; `connected`: their audio connected now,
 * what an alert's reach counts; as `online` from a server that does not say it).
 */
export function endpointTotals(ids, byZone) {
  let registered = 0;
  let online = 0;
  let connected = 0;
  for (const id of topMost(ids)) {
    const c = (byZone || {})[id];
    if (c) {
      registered += c.registered || 0;
      online += c.online || 0;
      connected += (c.connected === undefined ? c.online : c.connected) || 0;
    }
  }
  return { registered, online, connected };
}

// the status without the event stream: the endpoint counts from the registry's list
let countsCache = null;
let countsAt = 0;

async function countsFromRegistry() {
  if (countsCache && Date.now() - countsAt < COUNTS_MAX_AGE_MS) return countsCache;
  const data = await api("GET", "/api/v1/endpoints");
  // as the events count them: each zone with every zone below it
  const parentOf = new Map(state.zones.map((z) => [z.id, z.parent]));
  const out = {};
  for (const z of state.zones) out[z.id] = { registered: 0, online: 0, connected: 0 };
  for (const ep of data.endpoints) {
    const home = String(ep.zone).split("~")[0]; // an alert's group counts as its home zone
    for (let zone = home; zone && out[zone]; zone = parentOf.get(zone)) {
      out[zone].registered += 1;
      if (ep.presence && ep.presence.online) out[zone].online += 1;
      if (ep.connections) out[zone].connected += 1;
    }
  }
  countsCache = out;
  countsAt = Date.now();
  return out;
}

/**
 * Call `fn(status, how)` with every status: the `status` events, or, when none came for
 * 2 s (no stream, or a proxy that drops it), GET /api/v1/status once a second, with
 * `endpoints_by_zone` made from GET /api/v1/endpoints when the answer lacks it. `how`:
 * "live" (an event) or "polled". `onProblem(error)` hears of a failed poll. Returns the
 * function that stops it all.
 */
export function watchStatus(fn, onProblem) {
  let last = 0;
  let busy = false;
  let stopped = false;
  const offStatus = on("status", (data) => {
    last = Date.now();
    fn(data, "live");
  });
  const poll = async () => {
    if (busy || stopped || Date.now() - last < STALE_MS) return;
    busy = true;
    try {
      const data = await api("GET", "/api/v1/status");
      if (!data.endpoints_by_zone) {
        try { data.endpoints_by_zone = await countsFromRegistry(); } catch { /* shown as — */ }
      }
      // an event may have come while this was on its way: it is the newer
      if (!stopped && Date.now() - last >= STALE_MS) fn(data, "polled");
    } catch (err) {
      if (!stopped && onProblem) onProblem(err);
    } finally {
      busy = false;
    }
  };
  const offConnection = on("connection", (c) => { if (!c.ok) poll(); });
  const timer = setInterval(poll, POLL_MS);
  poll();
  return () => {
    stopped = true;
    clearInterval(timer);
    offStatus();
    offConnection();
  };
}

/** A line saying how fresh the page is: "live", "polled" or the failure. */
export function freshnessLine(testid) {
  const el = h("p", { class: "muted freshness", "data-testid": testid, role: "status" });
  return {
    element: el,
    update(how) {
      const now = Date.now() / 1000;
      el.textContent = how === "live"
        ? _("Live · updated {time}", { time: fmtTime(now, { date: false }) })
        : _("Updated {time} (polled each second)", { time: fmtTime(now, { date: false }) });
      el.classList.remove("error");
    },
    failed(err) {
      el.textContent = _("Not updated: {problem}", { problem: err.message || String(err) });
      el.classList.add("error");
    },
  };
}

/**
 * The active alerts of a status as a list: each one's message (never its id), class,
 * status, zones and reach, with a cancel button for those with the alert right. Rows are
 * kept by id, so a button keeps its focus while the reach counts change. Returns
 * {element, update(status, titles)}.
 */
export function activeAlerts() {
  // it takes the keyboard when the alert whose button had it ends (cancelled, played)
  const element = h("div", { "data-testid": "active-alerts", tabindex: "-1" });
  const rows = new Map();
  const update = (status, titles) => {
    const alerts = status.alerts || [];
    const live = new Set(alerts.map((a) => a.id));
    for (const [id, r] of rows) {
      if (live.has(id)) continue;
      const focused = r.element.contains(document.activeElement);
      r.element.remove();
      rows.delete(id);
      if (focused) element.focus();
    }
    for (const a of alerts) {
      let r = rows.get(a.id);
      if (!r) {
        r = { title: h("strong", {}), info: h("span", { class: "muted" }),
          reach: h("span", { "data-testid": `alert-reach-${a.id}` }) };
        const cancel = may("alert") ? h("button", { type: "button", class: "danger",
          "data-testid": `alert-cancel-${a.id}`,
          onclick: async (e) => {
            const button = e.currentTarget;
            button.disabled = true;
            const done = await attempt(() => api("DELETE", `/api/v1/alerts/${a.id}`));
            if (done) {
              toast(_("Alert cancelled."));
              element.focus(); // its row goes with it: the list keeps the keyboard
            } else {
              button.disabled = false;
              button.focus();
            }
          } }, _("Cancel alert")) : null;
        r.element = h("li", { class: "alert-item", "data-testid": "active-alert",
          "data-alert": a.id }, h("div", {}, r.title),
        h("div", { class: "row" }, r.info, r.reach, cancel));
        rows.set(a.id, r);
      }
      r.title.textContent = alertTitle(a, titles);
      const where = a.all ? _("every zone")
        : [...(a.zones || []).map(zoneName), ...(a.endpoints || [])].join(", ");
      r.info.textContent = `${classWord(a.class)} · ${alertStatusWord(a.status)} · ${where}`;
      const reach = a.reach || {};
      r.reach.textContent = _("reached {reached} of {targeted} loudspeakers",
        { reached: reach.reached || 0, targeted: reach.targeted || 0 });
    }
    if (!alerts.length) {
      if (!element.querySelector(".empty")) {
        element.replaceChildren(h("p", { class: "empty" }, _("No alert on air.")));
      }
      return;
    }
    let list = element.querySelector("ul");
    if (!list) { list = h("ul", { class: "alert-list" }); element.replaceChildren(list); }
    // in the status's order; moved only when it changed (a moved button loses its focus)
    const order = alerts.map((a) => rows.get(a.id).element);
    if (order.some((el, i) => list.children[i] !== el)) list.replaceChildren(...order);
  };
  return { element, update };
}

// listening over WebRTC (WHEP)

const WHEP_GATHER_MS = 2000; // the offer waits this long at most for its candidates
const WHEP_CONNECT_MS = 8000; // then the HTTP stream

/**
 * A WHEP viewer of zone `id` (POST /whep/zones/<id> with the session cookie and its CSRF
 * token): resolves to {pc, location, zone, stream} once the connection is up and the zone's
 * track has come; rejects (the connection closed) when it is refused or not up within
 * WHEP_CONNECT_MS. `onFailed()` is called if the connection fails later.
 */
export async function listenWhep(id, onFailed) {
  if (!window.RTCPeerConnection) throw new Error("no WebRTC in this browser");
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  let location = null;
  try {
    pc.addTransceiver("audio", { direction: "recvonly" });
    const track = new Promise((resolve) => {
      pc.addEventListener("track", (e) => resolve(e.streams[0] || new MediaStream([e.track])));
    });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") { resolve(); return; }
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") resolve();
      });
      setTimeout(resolve, WHEP_GATHER_MS);
    });
    const resp = await fetch(`/whep/zones/${encodeURIComponent(id)}`, {
      method: "POST", credentials: "same-origin", body: pc.localDescription.sdp,
      headers: { "Content-Type": "application/sdp", "X-CSRF-Token": state.csrf,
        "Accept-Language": state.lang } });
    if (resp.status !== 201) throw new Error(`WHEP ${resp.status}: ${await resp.text()}`);
    location = resp.headers.get("Location");
    await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
    const up = new Promise((resolve, reject) => {
      const check = () => {
        if (pc.connectionState === "connected") resolve();
        else if (pc.connectionState === "failed" || pc.connectionState === "closed") {
          reject(new Error(`WebRTC ${pc.connectionState}`));
        }
      };
      pc.addEventListener("connectionstatechange", check);
      check();
      setTimeout(() => reject(new Error("WebRTC: not connected in time")), WHEP_CONNECT_MS);
    });
    await up;
    const stream = await track;
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed") onFailed();
    });
    return { pc, location, zone: id, stream };
  } catch (err) {
    pc.close();
    if (location) {
      fetch(location, { method: "DELETE", credentials: "same-origin",
        headers: { "X-CSRF-Token": state.csrf } }).catch(() => {});
    }
    throw err;
  }
}

// the page

function levelPercent(dbfs) {
  if (typeof dbfs !== "number" || !Number.isFinite(dbfs)) return 0;
  return Math.max(0, Math.min(100, (100 * (dbfs - LEVEL_FLOOR_DB)) / -LEVEL_FLOOR_DB));
}

export default {
  render(container) {
    let status = null;
    let titles = new Map();
    const rows = new Map(); // zone id -> its live elements
    const levelsAt = new Map(); // zone id -> when its last level came (ms)

    // listening: one <audio> for the page, on one zone at a time. WebRTC first (WHEP: the
    // zone's own Opus packets, well under a second late); the zone's HTTP stream (a few
    // seconds late, as any player buffers) when WebRTC cannot be had
    let listening = null;
    let whep = null; // {pc, location, zone} while listening over WebRTC
    const audio = h("audio", { controls: true, preload: "none", "data-testid": "listen-audio",
      "aria-label": _("Zone audio") });
    const playerTitle = h("strong", {});
    const playerState = h("span", { class: "muted", role: "status",
      "data-testid": "listen-state" });
    const player = h("section", { class: "card ov-player", hidden: true,
      "aria-label": _("Listening"), "data-testid": "listen-player" },
      h("div", { class: "row" }, h("span", {}, _("Listening to:")), playerTitle, playerState,
        h("button", { type: "button", class: "secondary", "data-testid": "listen-stop",
          onclick: () => stopListening() }, _("Stop"))),
      audio);
    const endWhep = () => {
      if (!whep) return;
      const w = whep;
      whep = null;
      if (!w.location) { w.pc.close(); return; }
      // the DELETE first: a connection closed first would end the session before it came
      fetch(w.location, { method: "DELETE", credentials: "same-origin", keepalive: true,
        headers: { "X-CSRF-Token": state.csrf, "Accept-Language": state.lang } })
        .catch(() => {}) // the server ends a viewer it hears nothing from anyway
        .finally(() => w.pc.close());
    };
    const stopListening = () => {
      endWhep();
      audio.pause();
      audio.srcObject = null;
      audio.removeAttribute("src");
      audio.load(); // closes the stream's connection
      listening = null;
      player.hidden = true;
      delete player.dataset.mode;
      for (const [id, row] of rows) markListen(id, row);
    };
    const markListen = (id, row) => {
      const on = listening === id;
      row.listen.setAttribute("aria-pressed", on ? "true" : "false");
      row.listen.textContent = on ? _("Stop") : _("Listen");
    };
    const play = (id) => audio.play().catch((err) => {
      if (listening === id && err.name !== "AbortError") {
        toast(_("The browser cannot play this zone: {problem}", { problem: err.message }),
          "error");
        stopListening();
      }
    });
    const listenHttp = (id) => {
      // the zone's stream is public on Loa's port (as for any player): no session needed
      player.dataset.mode = "http";
      audio.srcObject = null;
      audio.src = `/zones/${encodeURIComponent(id)}/stream.mp3`;
      playerState.textContent = _("connecting… (the HTTP stream: a few seconds late)");
      play(id);
    };
    const listen = async (id) => {
      if (listening === id) { stopListening(); return; }
      if (listening) stopListening();
      listening = id;
      playerTitle.textContent = zoneName(id);
      playerState.textContent = _("connecting…");
      player.hidden = false;
      for (const [zid, row] of rows) markListen(zid, row);
      try {
        const w = await listenWhep(id, () => {
          // the connection failed while playing: the HTTP stream instead
          if (whep && whep.zone === id && listening === id) {
            endWhep();
            listenHttp(id);
          }
        });
        if (listening !== id) { w.pc.close(); return; }
        whep = w;
        player.dataset.mode = "webrtc";
        audio.removeAttribute("src");
        audio.srcObject = w.stream;
        playerState.textContent = _("live over WebRTC (under a second late)");
        play(id);
      } catch (err) {
        if (listening !== id) return;
        console.warn("WebRTC listening failed, the HTTP stream instead:", err);
        listenHttp(id);
      }
    };
    audio.addEventListener("playing", () => {
      if (player.dataset.mode === "http") playerState.textContent = _("the HTTP stream");
    });
    audio.addEventListener("error", () => {
      if (listening && player.dataset.mode === "http") {
        toast(_("The zone's stream stopped."), "error");
        stopListening();
      }
    });

    // the zone tree (rows of plain text and buttons: no checkboxes here)
    const row = (zone) => {
      const bar = h("span", {});
      const r = {
        onAir: h("span", { class: "ov-onair", "data-testid": `zone-onair-${zone.id}` }, "…"),
        prio: h("span", { class: "badge", "data-testid": `zone-priority-${zone.id}` }, ""),
        eps: h("span", { class: "ov-eps", "data-testid": `zone-endpoints-${zone.id}` }, ""),
        waiting: h("span", { class: "badge warn", hidden: true,
          "data-testid": `zone-waiting-${zone.id}` }, ""),
        meter: h("span", { class: "meter ov-meter", role: "meter", "aria-valuemin": "-60",
          "aria-valuemax": "0", "aria-valuenow": "-60",
          "aria-label": _("Level of {zone}", { zone: zone.name || zone.id }),
          "data-testid": `zone-level-${zone.id}` }, bar),
        bar,
        listen: h("button", { type: "button", class: "secondary", "aria-pressed": "false",
          "aria-label": _("Listen to {zone}", { zone: zone.name || zone.id }),
          "data-testid": `listen-${zone.id}`, onclick: () => listen(zone.id) }, _("Listen")),
      };
      rows.set(zone.id, r);
      const kids = state.zones.filter((z) => z.parent === zone.id);
      return h("li", {},
        h("div", { class: "zone ov-zone", "data-testid": `zone-${zone.id}` },
          h("span", { class: "ov-name" }, h("span", { class: "name" }, zone.name || zone.id),
            " ", h("code", {}, zone.id)),
          h("span", { class: "ov-state" }, r.onAir, h("span", { class: "ov-badges" }, r.prio,
            r.waiting), r.eps, r.meter, r.listen)),
        kids.length ? h("ul", {}, kids.map(row)) : null);
    };
    const ids = new Set(state.zones.map((z) => z.id));
    const roots = state.zones.filter((z) => !z.parent || !ids.has(z.parent));
    const tree = h("ul", { class: "tree ov-tree", "data-testid": "zone-tree" }, roots.map(row));

    const stats = h("p", { class: "row ov-stats", "data-testid": "overview-stats" });
    const fresh = freshnessLine("overview-freshness");
    const alertsBox = h("div", {});
    const alarmsBox = h("div", { "data-testid": "overview-alarms" });
    const sourcesBox = h("div", { "data-testid": "overview-sources" });

    container.append(
      fresh.element,
      stats,
      player,
      h("section", { class: "card", "aria-labelledby": "ov-alerts-h" },
        h("h2", { id: "ov-alerts-h" }, _("Active alerts")), alertsBox),
      h("section", { class: "card", "aria-labelledby": "ov-zones-h" },
        h("h2", { id: "ov-zones-h" }, _("Zones")), tree),
      h("div", { class: "grid two" },
        h("section", { class: "card", "aria-labelledby": "ov-sources-h" },
          h("h2", { id: "ov-sources-h" }, _("Sources")), sourcesBox),
        h("section", { class: "card", "aria-labelledby": "ov-alarms-h" },
          h("h2", { id: "ov-alarms-h" }, _("Active alarms")), alarmsBox)));

    const alertList = activeAlerts();
    alertsBox.append(alertList.element);

    // tables without controls: redrawn only when what they show changed
    let alarmsKey = "";
    let sourcesKey = "";
    const drawAlarms = () => {
      const alarms = status.alarms || [];
      const total = status.alarms_total ?? alarms.length; // the status shows the newest only
      const key = JSON.stringify([alarms, total, state.lang]);
      if (key === alarmsKey) return;
      alarmsKey = key;
      const more = total > alarms.length
        ? [h("p", { class: "muted", "data-testid": "overview-alarms-more" },
          _("The {shown} newest of {total} active alarms: the Alarms page lists them all.",
            { shown: alarms.length, total }))]
        : [];
      alarmsBox.replaceChildren(...more, table([
        { title: _("Alarm"), value: (a) => h("span", { class: "badge error" },
          ALARM_WORDS[a.kind] ? _(ALARM_WORDS[a.kind]) : a.kind) },
        { title: _("Where"), value: (a) => (ids.has(a.subject) ? zoneName(a.subject)
          : ALARM_SUBJECTS[a.subject] ? _(ALARM_SUBJECTS[a.subject]) : a.subject) },
        { title: _("Detail"), value: (a) => a.detail || "" },
        { title: _("Since"), value: (a) => fmtTime(a.raised_at) },
      ], alarms, { empty: _("No active alarm.") }));
    };
    const drawSources = () => {
      const mounts = status.mounts || [];
      const relays = Object.values(status.relays || {});
      const key = JSON.stringify([mounts.map((m) => [m.mount, m.connected, m.stalled, m.title]),
        relays.map((r) => [r.url, r.state, r.connected, r.last_error]), state.lang]);
      if (key === sourcesKey) return;
      sourcesKey = key;
      const connected = (yes) => h("span", { class: `badge ${yes ? "ok" : "error"}` },
        yes ? _("connected") : _("not connected"));
      sourcesBox.replaceChildren(
        h("h3", { class: "ov-sub" }, _("Live mounts")),
        table([
          { title: _("Mount"), value: (m) => h("code", {}, `/live/${m.mount}`) },
          { title: _("State"), value: (m) => h("span", {}, connected(m.connected),
            m.connected && m.stalled ? h("span", { class: "badge warn" }, _("silent")) : null) },
          { title: _("Title"), value: (m) => m.title || "—" },
        ], mounts, { empty: _("No source has connected since the server started.") }),
        h("h3", { class: "ov-sub" }, _("Relays")),
        table([
          { title: _("Address"), value: (r) => h("code", { class: "ov-url" }, r.url) },
          { title: _("State"), value: (r) => connected(r.connected) },
          { title: _("Last error"), value: (r) => r.last_error || "—" },
        ], relays, { empty: _("No relay is playing.") }));
    };

    const drawZones = () => {
      const byZone = status.endpoints_by_zone;
      for (const z of status.zones || []) {
        const r = rows.get(z.zone);
        if (!r) continue; // an alert's run-time group: its home zone shows it
        const prio = (z.on_air && z.on_air.priority) || 0;
        r.onAir.textContent = onAirTitle(z, status, titles);
        r.prio.textContent = priorityWord(prio);
        r.prio.title = String(prio);
        r.prio.className = priorityClass(prio);
        // the requests above what plays that cannot play (their source away): the zone is
        // not given back, and goes live again when the source comes
        const waiting = waitingNote(z, status, titles);
        r.waiting.hidden = !waiting;
        r.waiting.textContent = waiting ? waiting.text : "";
        r.waiting.title = waiting ? waiting.tip : "";
        if (byZone) {
          const t = endpointTotals([z.zone], byZone);
          r.eps.textContent = _("{online}/{registered} loudspeakers online", t);
          r.eps.className = `ov-eps ${t.online < t.registered ? "warn" : "muted"}`;
        } else {
          r.eps.textContent = "";
        }
      }
    };

    const drawStats = (how) => {
      const fleet = status.fleet || {};
      const badge = (cls, text) => h("span", { class: `badge ${cls}` }, text);
      const byZone = status.endpoints_by_zone;
      const totals = byZone
        ? endpointTotals(state.zones.filter((z) => !z.parent || !ids.has(z.parent))
          .map((z) => z.id), byZone)
        : { online: fleet.online || 0, registered: fleet.endpoints || 0 };
      stats.replaceChildren(...[
        badge(totals.online < totals.registered ? "warn" : "ok",
          _("{online} of {registered} loudspeakers online", totals)),
        badge("", _("{count} listeners", { count: status.listeners || 0 })),
        fleet.broker ? badge(fleet.connected ? "ok" : "error",
          fleet.connected ? _("control link connected") : _("control link lost")) : null,
        (status.alerts || []).length ? badge("error",
          _("{count} alerts on air", { count: status.alerts.length })) : null,
      ].filter(Boolean)); // replaceChildren would write a null as "null"
      fresh.update(how);
    };

    const stopStatus = watchStatus((data, how) => {
      status = data;
      drawZones();
      alertList.update(status, titles);
      drawAlarms();
      drawSources();
      drawStats(how);
    }, (err) => fresh.failed(err));

    mediaTitles().then((t) => { titles = t; if (status) { drawZones(); alertList.update(status, titles); } });

    // the level meters: a bar per zone, empty when no level came for a while
    const setLevel = (id, dbfs) => {
      const r = rows.get(id);
      if (!r) return;
      const pct = levelPercent(dbfs);
      r.bar.style.width = `${pct}%`;
      r.bar.className = dbfs > -3 ? "hot" : "";
      r.meter.setAttribute("aria-valuenow", String(Math.round(Math.max(LEVEL_FLOOR_DB,
        Number.isFinite(dbfs) ? dbfs : LEVEL_FLOOR_DB))));
    };
    const stopLevels = on("levels", (data) => {
      const now = Date.now();
      for (const [id, level] of Object.entries(data.zones || {})) {
        levelsAt.set(id, now);
        setLevel(id, level.peak_dbfs);
      }
    });
    const decay = setInterval(() => {
      const now = Date.now();
      for (const [id, at] of levelsAt) {
        if (now - at > LEVEL_STALE_MS) { setLevel(id, LEVEL_FLOOR_DB); levelsAt.delete(id); }
      }
    }, 500);

    return () => {
      stopStatus();
      stopLevels();
      clearInterval(decay);
      stopListening();
    };
  },
};
