// The studio (Phòng thu): go live from the browser. Pick the microphone and watch its
// level, pick the zones, press "on air": the page pushes the microphone over WebRTC to
// WHIP (POST /whip/<mount>, RFC 9725, with the session cookie and its CSRF token, as the
// API takes them), then takes the zones for the mount (POST /api/v1/zones/<zone>/live
// {"mount"}: the server picks district- or commune-live priority from the user's scope).
// Pressed again, it gives the zones back and ends the WHIP session (DELETE on its URL).
//
// While on air it shows the connection's round trip and packet loss (the receiver reports
// of the server, RTCPeerConnection.getStats: remote-inbound-rtp), an estimate of the delay
// to the loudspeakers (half the round trip, the mount's jitter buffer and the server's own
// p50, from the status), and warns when the microphone clips (a peak at or above -1 dBFS)
// or is silent (below -60 dBFS for 5 s).
//
// The broadcast outlives the page: an operator who opens the overview while on air stays
// on air, and finds the broadcast here again to end it. Signing out, or closing the tab,
// ends it. Signing out gives the zones back first (the same release as the button's, made
// while the session that took them still lives), then signs out; the server ends the WHIP
// sources of a login that signs out in any case. On closing, the zones are given back by
// keepalive requests; the server ends a WHIP source whose media stops within a second.
import { _, h, may, state, toast, zoneName, zoneTree } from "../app.js";
import { freshnessLine, topMost, watchStatus } from "./overview.js";

const CSRF_HEADER = "X-CSRF-Token"; // as app.js sends it on the API
const DEFAULT_MOUNT = "studio";
const MOUNT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const GATHER_MS = 2000; // the offer waits this long at most for its candidates
const CONNECT_MS = 15000; // ICE and DTLS, after the answer
const STATS_MS = 1000;
const METER_MS = 50;
const FLOOR_DB = -60; // the meter's empty end; below it for SILENT_MS: silent
const CLIP_DB = -1; // a peak at or above it: clipping
const SILENT_MS = 5000;
const CLIP_HOLD_MS = 2000; // the clipping warning stays this long after the last clip

// the broadcast, kept across visits to the page (null: off air)
let broadcast = null;
// the zones chosen, kept across visits too
let chosenZones = [];

/** A dBFS figure of a linear amplitude (0 → -Infinity). */
function dbfs(amplitude) {
  return amplitude > 0 ? 20 * Math.log10(amplitude) : -Infinity;
}

function percent(db) {
  if (!Number.isFinite(db)) return 0;
  return Math.max(0, Math.min(100, (100 * (db - FLOOR_DB)) / -FLOOR_DB));
}

/** A fetch to a WHIP session resource with the console's session: the cookie, the CSRF
 * token and the language. Rejects with an Error carrying the server's message. */
async function whipFetch(method, url, { body, keepalive = false } = {}) {
  const headers = { "Accept-Language": state.lang };
  if (state.csrf) headers[CSRF_HEADER] = state.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/sdp";
  const resp = await fetch(url, { method, headers, body, credentials: "same-origin",
    keepalive });
  if (resp.status >= 400) {
    let message = _("the server answered {status}", { status: resp.status });
    try {
      const data = await resp.json();
      if (data && data.error) message = data.error;
    } catch { /* not JSON: the status says it */ }
    const err = new Error(message);
    err.status = resp.status;
    throw err;
  }
  return resp;
}

/** An API call as app.js's api() makes it (cookie and CSRF token), without its toast:
 * resolves to {ok, status, data}. */
async function apiCall(method, path, body, { keepalive = false } = {}) {
  const headers = { "Accept-Language": state.lang, "Content-Type": "application/json" };
  if (state.csrf) headers[CSRF_HEADER] = state.csrf;
  const resp = await fetch(path, { method, headers, body: JSON.stringify(body || {}),
    credentials: "same-origin", keepalive });
  let data = {};
  try { data = await resp.json(); } catch { /* empty */ }
  return { ok: resp.ok, status: resp.status, data };
}

/** Wait until the peer connection's candidates are gathered (or GATHER_MS passed). */
function gathered(pc) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") { resolve(); return; }
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHER_MS);
  });
}

/** Wait until the peer connection is connected; rejects when it fails or CONNECT_MS pass. */
function connected(pc) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (pc.connectionState === "connected") { finish(); resolve(); }
      else if (pc.connectionState === "failed" || pc.connectionState === "closed") {
        finish();
        reject(new Error(_("the WebRTC connection to the server failed")));
      }
    };
    const timer = setTimeout(() => {
      finish();
      reject(new Error(_("the WebRTC connection to the server was not made in time")));
    }, CONNECT_MS);
    const finish = () => {
      clearTimeout(timer);
      pc.removeEventListener("connectionstatechange", check);
    };
    pc.addEventListener("connectionstatechange", check);
    check();
  });
}

/** The microphone's constraints: the chosen device, the voice processing as chosen. */
function constraints(deviceId, processing) {
  const audio = { echoCancellation: processing, noiseSuppression: processing,
    autoGainControl: processing, channelCount: 1 };
  if (deviceId) audio.deviceId = { exact: deviceId };
  return { audio, video: false };
}

/**
 * Go on air: push `track` to WHIP on `mount`, then take `zones` for it. Resolves to the
 * broadcast {pc, sender, location, mount, zones (taken), refused ([zone, message])};
 * rejects with an Error when the WHIP session cannot be made or no zone is taken (the
 * session is then ended).
 */
async function goOnAir(track, stream, mount, zones, onState) {
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  let location = null;
  try {
    const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    onState(_("Connecting to the server…"));
    const resp = await whipFetch("POST", `/whip/${encodeURIComponent(mount)}`,
      { body: pc.localDescription.sdp });
    location = resp.headers.get("Location");
    await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
    await connected(pc);
    onState(_("Taking the zones…"));
    const taken = [];
    const refused = [];
    for (const zone of zones) {
      const out = await apiCall("POST", `/api/v1/zones/${encodeURIComponent(zone)}/live`,
        { mount });
      if (out.ok) taken.push(zone);
      else refused.push([zone, (out.data && out.data.error) || String(out.status)]);
    }
    if (!taken.length) {
      throw new Error(refused.length
        ? _("No zone was taken: {problem}", { problem: refused.map(([z, m]) =>
          `${zoneName(z)}: ${m}`).join("; ") })
        : _("No zone was taken."));
    }
    return { pc, sender: transceiver.sender, location, mount, zones: taken, refused,
      since: Date.now() };
  } catch (err) {
    if (location) whipFetch("DELETE", location).catch(() => {});
    pc.close();
    throw err;
  }
}

/** Give the broadcast's zones back, then end its WHIP session (with `keepalive`, for a
 * closing tab: every request at once, each outliving the page). Resolves to what could not
 * be ended ([zone or "WHIP", message]). */
async function goOffAir(b, { keepalive = false } = {}) {
  const failed = [];
  const release = (zone) => apiCall("DELETE", `/api/v1/zones/${encodeURIComponent(zone)}/live`,
    { mount: b.mount }, { keepalive })
    .catch((err) => ({ ok: false, status: 0, data: { error: err.message } }))
    .then((out) => {
      if (!out.ok && out.status !== 404) failed.push([zone, (out.data && out.data.error) || ""]);
    });
  const end = () => (b.location ? whipFetch("DELETE", b.location, { keepalive })
    .catch((err) => {
      if (err.status !== 404) failed.push(["WHIP", err.message]); // 404: it had ended
    }) : Promise.resolve());
  if (keepalive) {
    await Promise.all([...b.zones.map(release), end()]);
  } else {
    await Promise.all(b.zones.map(release)); // the zones fall back first, then the source ends
    await end();
  }
  b.pc.close();
  return failed;
}

/** The connection's figures from getStats: {rttMs, lossPct, sent} (null where unknown). */
async function connectionStats(pc) {
  const out = { rttMs: null, lossPct: null, sent: null, pairRttMs: null };
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type === "remote-inbound-rtp" && s.kind === "audio") {
      if (typeof s.roundTripTime === "number") out.rttMs = s.roundTripTime * 1000;
      if (typeof s.fractionLost === "number") out.lossPct = s.fractionLost * 100;
    } else if (s.type === "outbound-rtp" && s.kind === "audio") {
      out.sent = s.packetsSent;
    } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded" &&
        typeof s.currentRoundTripTime === "number") {
      out.pairRttMs = s.currentRoundTripTime * 1000;
    }
  });
  if (out.rttMs === null) out.rttMs = out.pairRttMs; // before the first receiver report
  return out;
}

// on closing the tab: the zones back and the session ended, by requests that outlive it
window.addEventListener("pagehide", () => {
  if (broadcast) {
    goOffAir(broadcast, { keepalive: true }).catch(() => {});
    broadcast = null;
  }
});

// signing out while on air: app.js signs out on a click of its #logout button; this
// listener, on the window in the capture phase, takes that click first, gives the zones
// back and ends the session (goOffAir), then passes the click on to app.js's sign-out
let signOutRelease = null; // the release under way before a sign-out
let passingClick = false; // the click passed on to app.js, once the zones are back
window.addEventListener("click", (e) => {
  if (passingClick) return;
  const button = e.target instanceof Element ? e.target.closest("#logout") : null;
  if (!button || (!broadcast && !signOutRelease)) return;
  e.stopPropagation(); // app.js's sign-out waits until the zones are given back
  e.preventDefault();
  if (signOutRelease) return; // a second click: the sign-out follows the release under way
  const b = broadcast;
  broadcast = null;
  toast(_("Signing out: giving the zones back first…"));
  signOutRelease = goOffAir(b).catch((err) => [["WHIP", err.message || String(err)]])
    .then((failed) => {
      if (failed.length) {
        toast(_("Off air, but not everything was given back: {problem}",
          { problem: failed.map(([z, m]) => `${zoneName(z)}: ${m}`).join("; ") }), "error");
      }
    })
    .finally(() => {
      if (b.stream) b.stream.getTracks().forEach((t) => t.stop());
      signOutRelease = null;
      passingClick = true;
      try { button.click(); } finally { passingClick = false; }
    });
}, true);

export default {
  render(container) {
    if (!may("operate")) {
      container.append(h("p", { class: "empty" }, _("Going live needs the operate right.")));
      return undefined;
    }
    let status = null;
    let stream = null; // the microphone
    let audioCtx = null;
    let analyser = null;
    let samples = null;
    let busy = false;
    let silentSince = null;
    let clippedAt = 0;
    let stopped = false;

    // 1. the microphone
    const micSelect = h("select", { id: "studio-mic", "data-testid": "studio-mic" });
    const processing = h("input", { type: "checkbox", id: "studio-processing",
      "data-testid": "studio-processing" });
    const processingLabel = h("label", { class: "row", for: "studio-processing" }, processing,
      h("span", {}, _("Voice processing (noise suppression, automatic level, echo cancelling)")));
    processingLabel.style.flexWrap = "nowrap"; // the box beside its text, on a phone too
    processingLabel.lastChild.style.flex = "1 1 0";
    const bar = h("span", {});
    const meter = h("span", { class: "meter studio-meter", role: "meter",
      "aria-valuemin": String(FLOOR_DB), "aria-valuemax": "0",
      "aria-valuenow": String(FLOOR_DB), "aria-label": _("Microphone level"),
      "data-testid": "studio-level" }, bar);
    meter.style.flex = "1 1 200px";
    const levelText = h("span", { class: "muted", "data-testid": "studio-level-db" }, "");
    const micWarning = h("p", { class: "muted", role: "status",
      "data-testid": "studio-mic-state" }, "");
    const micRetry = h("button", { type: "button", class: "secondary", hidden: true,
      "data-testid": "studio-mic-retry", onclick: () => openMic() },
    _("Use the microphone"));

    // 2. the zones
    const tree = zoneTree({ onChange: (ids) => { chosenZones = ids; drawButton(); } });
    tree.element.dataset.testid = "studio-zones";
    tree.set(chosenZones);

    // 3. on air
    const mountSelect = h("select", { id: "studio-mount", "data-testid": "studio-mount" });
    const onAir = h("button", { type: "button", "aria-pressed": "false",
      "data-testid": "studio-onair", onclick: () => toggle() }, _("Go on air"));
    const airState = h("p", { role: "status", "data-testid": "studio-state" }, "");
    const rtt = h("dd", { "data-testid": "studio-rtt" }, "—");
    const loss = h("dd", { "data-testid": "studio-loss" }, "—");
    const delay = h("dd", { "data-testid": "studio-latency" }, "—");
    const takenLine = h("dd", { "data-testid": "studio-zones-taken" }, "—");
    const stats = h("dl", { class: "studio-stats", "data-testid": "studio-stats" },
      h("dt", {}, _("Zones on air")), takenLine,
      h("dt", {}, _("Round trip to the server")), rtt,
      h("dt", {}, _("Packet loss")), loss,
      h("dt", {}, _("Delay to the loudspeakers (estimate)")), delay);
    const fresh = freshnessLine("studio-freshness");

    container.append(
      fresh.element,
      h("div", { class: "grid two" },
        h("section", { class: "card", "aria-labelledby": "studio-mic-h" },
          h("h2", { id: "studio-mic-h" }, _("1. Microphone")),
          h("label", { for: "studio-mic" }, _("Microphone")),
          micSelect,
          h("div", { class: "row" }, meter, levelText),
          micWarning,
          processingLabel,
          micRetry),
        h("section", { class: "card", "aria-labelledby": "studio-zones-h" },
          h("h2", { id: "studio-zones-h" }, _("2. Zones")),
          h("p", { class: "muted" },
            _("Choosing a commune chooses its villages: a live source on a zone plays on the zones below it too.")),
          tree.element)),
      h("section", { class: "card", "aria-labelledby": "studio-air-h" },
        h("h2", { id: "studio-air-h" }, _("3. Go on air")),
        h("label", { for: "studio-mount" }, _("Live mount")),
        mountSelect,
        h("p", { class: "muted" },
          _("The microphone goes to the mount over WebRTC; the zones chosen take the mount, at district or commune live priority as your scope allows.")),
        h("div", { class: "row" }, onAir),
        airState,
        stats));

    // the microphone: its stream, the devices, the level

    const setWarning = (text, kind) => {
      // rewritten only when it changes: a screen reader would read it out again
      if (micWarning.textContent !== text) micWarning.textContent = text;
      if (micWarning.className !== (kind || "muted")) micWarning.className = kind || "muted";
    };

    const listDevices = async () => {
      let devices = [];
      try {
        devices = (await navigator.mediaDevices.enumerateDevices())
          .filter((d) => d.kind === "audioinput");
      } catch { /* no device list: the default microphone only */ }
      const current = stream && stream.getAudioTracks()[0];
      const currentId = current && current.getSettings ? current.getSettings().deviceId : "";
      micSelect.replaceChildren(...(devices.length ? devices : [{ deviceId: "", label: "" }])
        .map((d, i) => h("option", { value: d.deviceId },
          d.label || _("Microphone {n}", { n: i + 1 }))));
      if (currentId && devices.some((d) => d.deviceId === currentId)) micSelect.value = currentId;
    };

    const stopMeter = () => {
      if (audioCtx) { audioCtx.close().catch(() => {}); audioCtx = null; analyser = null; }
    };

    const startMeter = () => {
      stopMeter();
      if (!stream) return;
      audioCtx = new AudioContext();
      const source = audioCtx.createMediaStreamSource(stream);
      analyser = audioCtx.createAnalyser();
      analyser.fftSize = 4096; // 85 ms at 48 kHz: reads 50 ms apart miss no peak
      samples = new Float32Array(analyser.fftSize);
      source.connect(analyser);
      silentSince = Date.now();
      // a page shown without a click of its own starts its audio suspended: the next click
      // (any) wakes it
      if (audioCtx.state === "suspended") {
        setWarning(_("Click anywhere on the page to show the microphone's level."), "warn");
      }
    };

    const wake = () => { if (audioCtx && audioCtx.state === "suspended") audioCtx.resume(); };
    document.addEventListener("click", wake);

    const openMic = async () => {
      micRetry.hidden = true;
      if (!stream) setWarning(_("Asking the browser for the microphone…"), "muted");
      const deviceId = micSelect.value || undefined;
      let fresh = null;
      try {
        fresh = await navigator.mediaDevices.getUserMedia(constraints(deviceId, processing.checked));
      } catch (err) {
        setWarning(_("The microphone cannot be used: {problem}", { problem: err.message || err.name }),
          "error");
        micRetry.hidden = false;
        drawButton();
        return;
      }
      if (stopped) { fresh.getTracks().forEach((t) => t.stop()); return; }
      const old = stream;
      stream = fresh;
      if (broadcast) {
        // on air: the new microphone replaces the old one on the connection, without a gap
        await broadcast.sender.replaceTrack(fresh.getAudioTracks()[0]);
        if (broadcast.stream && broadcast.stream !== fresh) {
          broadcast.stream.getTracks().forEach((t) => t.stop());
        }
        broadcast.stream = fresh;
      } else if (old) {
        old.getTracks().forEach((t) => t.stop());
      }
      setWarning("", "muted");
      await listDevices();
      startMeter();
      drawButton();
    };

    micSelect.addEventListener("change", () => openMic());
    processing.addEventListener("change", () => openMic());

    const meterTimer = setInterval(() => {
      if (!analyser || !audioCtx || audioCtx.state !== "running") return;
      analyser.getFloatTimeDomainData(samples);
      let peak = 0;
      let sum = 0;
      for (const x of samples) { const a = Math.abs(x); if (a > peak) peak = a; sum += x * x; }
      const peakDb = dbfs(peak);
      const rmsDb = dbfs(Math.sqrt(sum / samples.length));
      const now = Date.now();
      bar.style.width = `${percent(peakDb)}%`;
      bar.className = peakDb >= CLIP_DB ? "hot" : "";
      meter.setAttribute("aria-valuenow", String(Math.round(Math.max(FLOOR_DB,
        Number.isFinite(peakDb) ? peakDb : FLOOR_DB))));
      levelText.textContent = Number.isFinite(peakDb)
        ? _("peak {peak} dBFS", { peak: peakDb.toFixed(0) }) : _("peak −∞ dBFS");
      if (peakDb >= CLIP_DB) clippedAt = now;
      if (peakDb >= FLOOR_DB) silentSince = null;
      else if (silentSince === null) silentSince = now;
      if (now - clippedAt < CLIP_HOLD_MS) {
        setWarning(_("The microphone clips: turn its gain down."), "error");
        micWarning.dataset.warning = "clipping";
      } else if (silentSince !== null && now - silentSince >= SILENT_MS) {
        setWarning(_("The microphone is silent: is it muted, or the wrong one?"), "warn");
        micWarning.dataset.warning = "silent";
      } else {
        setWarning(_("The microphone's level is good."), "ok");
        micWarning.dataset.warning = "";
      }
    }, METER_MS);

    // the mounts: those the status knows, and the default one

    let mountsKey = "";
    const drawMounts = () => {
      const known = new Map(((status && status.mounts) || []).map((m) => [m.mount, m]));
      if (!known.has(DEFAULT_MOUNT)) known.set(DEFAULT_MOUNT, { mount: DEFAULT_MOUNT });
      const list = [...known.values()].filter((m) => MOUNT_NAME.test(m.mount)).sort((a, b) =>
        (a.mount === DEFAULT_MOUNT ? -1 : b.mount === DEFAULT_MOUNT ? 1
          : a.mount.localeCompare(b.mount)));
      const mine = broadcast && broadcast.mount;
      const key = JSON.stringify([list.map((m) => [m.mount, m.connected, m.kind]), mine,
        state.lang]);
      if (key === mountsKey) return;
      mountsKey = key;
      const keep = mine || mountSelect.value || DEFAULT_MOUNT;
      const busy = _("busy: another source is live on it");  // a literal: extracted
      mountSelect.replaceChildren(...list.map((m) => h("option", { value: m.mount },
        `/live/${m.mount}` + (m.connected && m.mount !== mine ? ` — ${busy}` : ""))));
      mountSelect.value = list.some((m) => m.mount === keep) ? keep : DEFAULT_MOUNT;
    };

    // on air and off

    const drawButton = () => {
      const live = Boolean(broadcast);
      onAir.setAttribute("aria-pressed", live ? "true" : "false");
      onAir.textContent = live ? _("Stop broadcasting") : _("Go on air");
      onAir.className = live ? "danger" : ""; // red while on air
      onAir.disabled = busy || (!live && (!stream || !chosenZones.length));
      mountSelect.disabled = live || busy;
      if (!live && !busy) {
        airState.className = "muted";
        airState.textContent = !stream ? _("The microphone is not ready.")
          : chosenZones.length ? _("Ready: press “Go on air” to go live on {zones}.",
            { zones: topMost(chosenZones).map(zoneName).join(", ") })
            : _("Choose one or more zones on the tree.");
        airState.dataset.state = "off";
      } else if (live && !busy) {
        airState.className = "ok";
        airState.textContent = _("On air on {zones} from /live/{mount}.",
          { zones: broadcast.zones.map(zoneName).join(", "), mount: broadcast.mount });
        airState.dataset.state = "on";
      }
      takenLine.textContent = live ? broadcast.zones.map(zoneName).join(", ") : "—";
      stats.hidden = !live;
    };

    const toggle = async () => {
      if (busy) return;
      busy = true;
      drawButton();
      try {
        if (broadcast) {
          const b = broadcast;
          airState.textContent = _("Giving the zones back…");
          const failed = await goOffAir(b);
          broadcast = null;
          if (failed.length) {
            toast(_("Off air, but not everything was given back: {problem}",
              { problem: failed.map(([z, m]) => `${zoneName(z)}: ${m}`).join("; ") }), "error");
          } else {
            toast(_("Off air: the zones are given back."));
          }
          rtt.textContent = loss.textContent = delay.textContent = "—";
        } else {
          const mount = mountSelect.value || DEFAULT_MOUNT;
          const zones = topMost(chosenZones);
          airState.className = "muted";
          airState.dataset.state = "connecting";
          airState.textContent = _("Connecting to the server…");
          const b = await goOnAir(stream.getAudioTracks()[0], stream, mount, zones,
            (text) => { airState.textContent = text; });
          b.stream = stream;
          broadcast = b;
          watchConnection(b);
          if (b.refused.length) {
            toast(_("Some zones were not taken: {problem}", { problem: b.refused.map(([z, m]) =>
              `${zoneName(z)}: ${m}`).join("; ") }), "error");
          }
          toast(_("On air on {zones}.", { zones: b.zones.map(zoneName).join(", ") }));
        }
      } catch (err) {
        toast(_("Cannot go on air: {problem}", { problem: err.message || String(err) }), "error");
      } finally {
        busy = false;
        if (!stopped) { drawButton(); drawMounts(); }
      }
    };

    // a broadcast whose connection fails ends: its zones given back, its session ended
    const watchConnection = (b) => {
      b.pc.addEventListener("connectionstatechange", async () => {
        if (broadcast !== b) return;
        if (b.pc.connectionState === "disconnected") {
          airState.className = "warn";
          airState.textContent = _("The connection to the server is interrupted; waiting for it to come back…");
        } else if (b.pc.connectionState === "connected") {
          drawButton();
        } else if (b.pc.connectionState === "failed") {
          broadcast = null;
          await goOffAir(b).catch(() => []);
          toast(_("The connection to the server was lost: off air."), "error");
          if (!stopped) { drawButton(); drawMounts(); }
        }
      });
    };

    // the figures while on air

    const mountStatus = () => broadcast && status &&
      (status.mounts || []).find((m) => m.mount === broadcast.mount);
    const statsTimer = setInterval(async () => {
      const b = broadcast;
      if (!b || busy) return;
      let figures;
      try { figures = await connectionStats(b.pc); } catch { return; }
      if (b !== broadcast) return;
      rtt.textContent = figures.rttMs !== null ? `${figures.rttMs.toFixed(0)} ms` : "—";
      loss.textContent = figures.lossPct !== null ? `${figures.lossPct.toFixed(1)} %` : "—";
      const m = mountStatus();
      const server = status && status.engine && status.engine.server_latency_ms;
      if (figures.rttMs !== null && m && typeof m.jitter_frames === "number") {
        const net = figures.rttMs / 2;
        const buffer = m.jitter_frames * 20;
        const out = server && typeof server.p50 === "number" ? server.p50 : 0;
        delay.textContent = _("≈ {total} ms (network {net} ms, server buffer {buffer} ms, sending {out} ms)",
          { total: Math.round(net + buffer + out), net: Math.round(net), buffer,
            out: Math.round(out) });
      } else {
        delay.textContent = "—";
      }
    }, STATS_MS);

    const stopStatus = watchStatus((data, how) => {
      status = data;
      drawMounts();
      fresh.update(how);
    }, (err) => fresh.failed(err));

    drawMounts();
    drawButton();
    if (broadcast) {
      // back on the page while on air: its microphone is the broadcast's
      stream = broadcast.stream;
      mountSelect.value = broadcast.mount;
      listDevices();
      startMeter();
    } else if (!navigator.mediaDevices || !window.RTCPeerConnection) {
      setWarning(_("This browser cannot send audio (it lacks WebRTC or microphone access; a page not served over HTTPS or from this computer has none)."),
        "error");
    } else {
      listDevices().then(() => openMic());
    }

    return () => {
      stopped = true;
      clearInterval(meterTimer);
      clearInterval(statsTimer);
      document.removeEventListener("click", wake);
      stopStatus();
      stopMeter();
      if (broadcast && !state.session) {
        // signed out another way (the session ended): the broadcast goes with it (its
        // media stops; the server ends the source within a second)
        broadcast.pc.close();
        broadcast.stream.getTracks().forEach((t) => t.stop());
        broadcast = null;
      } else if (!broadcast && stream) {
        stream.getTracks().forEach((t) => t.stop()); // off air: the microphone is let go
      }
    };
  },
};
