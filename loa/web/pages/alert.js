// Emergency alert (Phát khẩn cấp), for those with the alert right: pick the zones, the class
// and the content (text read aloud in a voice, a file of the media library, or a live
// mount), the attention tone, repeats and expiry; a confirmation step that says how many
// loudspeakers it will reach; then POST /api/v1/alerts and its proof of reach, polled each
// second from GET /api/v1/alerts/{id} (the reached count climbing), with a cancel button
// (DELETE /api/v1/alerts/{id}). Drawing an area on a map is not offered: zones only.
import {
  _, N_, VOICES, api, attempt, fmtDuration, fmtNumber, fmtTime, h, may, state, toast, zoneName,
  zoneTree,
} from "../app.js";
import {
  activeAlerts, alertStatusWord, alertTitle, classWord, endpointTotals, freshnessLine,
  mediaTitles, topMost, watchStatus,
} from "./overview.js";

const POLL_MS = 1000;
const FINAL = new Set(["completed", "cancelled", "expired"]);
const MAX_REPEAT = 10; // loa/control/alerts/model.py
const MAX_GAP_S = 60;
const DEFAULT_MOUNT = "studio";
const CLASSES = [
  ["emergency", N_("Emergency: before everything else")],
  ["priority", N_("Priority: before the schedule, after live broadcasts")],
  ["normal", N_("Normal: at the level of the schedule")],
];

let uid = 0;
const fieldId = (name) => `alert-${name}-${++uid}`;

/** A labelled control: its label above it (a real <label for>). */
function field(label, control, hint) {
  const id = control.id || fieldId(control.name || "field");
  control.id = id;
  return h("div", { class: "alert-field" }, h("label", { for: id }, label), control,
    hint ? h("small", { class: "muted" }, hint) : null);
}

/** A group of radio buttons in a fieldset; returns {element, value()}. */
function radios(legend, name, options, chosen) {
  const element = h("fieldset", { class: "alert-radios" }, h("legend", {}, legend),
    options.map(([value, text]) => h("label", { class: "alert-radio" },
      h("input", { type: "radio", name, value, checked: value === chosen,
        "data-testid": `${name}-${value}` }), h("span", {}, _(text)))));
  return {
    element,
    value: () => (element.querySelector("input:checked") || {}).value,
  };
}

export default {
  render(container) {
    if (!may("alert")) {
      container.append(h("p", { class: "empty" }, _("Emergency alerts need the alert right.")));
      return undefined;
    }
    let status = null;
    let chosen = [];
    let titles = new Map();
    let media = [];
    let step = "form";
    let poll = null; // the reach poll's timer
    let pending = null; // the request being confirmed: {body, summary}
    const counts = new Map(); // zone id -> its count in the tree

    // 1. the form
    const tree = zoneTree({
      onChange: (ids) => { chosen = ids; drawReachNote(); },
      decorate: (zone) => {
        const el = h("span", { class: "muted alert-count", "data-testid": `alert-count-${zone.id}` });
        counts.set(zone.id, el);
        return el;
      },
    });
    tree.element.dataset.testid = "alert-zones";
    const reachNote = h("p", { class: "muted", role: "status", "data-testid": "alert-zones-reach" });

    const cls = radios(_("Class"), "alert-class", CLASSES, "emergency");
    const kind = radios(_("Content"), "alert-kind", [
      ["text", N_("Text read aloud")],
      ["media", N_("A file of the media library")],
      ["live", N_("Live from a mount (the studio)")],
    ], "text");

    const text = h("textarea", { name: "text", rows: "4", maxlength: "5000",
      "data-testid": "alert-text" });
    const voice = h("select", { name: "voice", "data-testid": "alert-voice" },
      VOICES.map(([v, label]) => h("option", { value: v }, _(label))));
    const mediaSelect = h("select", { name: "media", "data-testid": "alert-media" },
      h("option", { value: "" }, _("Loading the library…")));
    const mountSelect = h("select", { name: "mount", "data-testid": "alert-mount" });
    const textPart = h("div", { class: "alert-part" },
      field(_("Message to read"), text), field(_("Voice"), voice));
    const mediaPart = h("div", { class: "alert-part" }, field(_("File"), mediaSelect));
    const livePart = h("div", { class: "alert-part" }, field(_("Live mount"), mountSelect,
      _("A live alert plays until it is cancelled or expires: set an expiry.")));
    const showPart = () => {
      const k = kind.value();
      textPart.hidden = k !== "text";
      mediaPart.hidden = k !== "media";
      livePart.hidden = k !== "live";
    };
    kind.element.addEventListener("change", showPart);

    const tone = h("input", { type: "checkbox", name: "tone", checked: true,
      "data-testid": "alert-tone" });
    const repeat = h("input", { type: "number", name: "repeat", min: "1", max: String(MAX_REPEAT),
      value: "1", inputmode: "numeric", "data-testid": "alert-repeat" });
    const gap = h("input", { type: "number", name: "gap", min: "0", max: String(MAX_GAP_S),
      step: "0.5", placeholder: _("server default"), "data-testid": "alert-gap" });
    const expiry = h("input", { type: "number", name: "expiry", min: "1", step: "1",
      placeholder: _("none"), inputmode: "numeric", "data-testid": "alert-expiry" });
    const formError = h("p", { class: "error", role: "alert", "data-testid": "alert-form-error" });

    const form = h("form", { class: "alert-form", "data-testid": "alert-form", novalidate: true,
      onsubmit: (e) => { e.preventDefault(); review(); } },
    h("div", { class: "grid two" },
      h("section", { class: "card", "aria-labelledby": "alert-zones-h" },
        h("h2", { id: "alert-zones-h" }, _("1. Zones")), tree.element, reachNote),
      h("section", { class: "card", "aria-labelledby": "alert-what-h" },
        h("h2", { id: "alert-what-h" }, _("2. Class and content")),
        cls.element, kind.element, textPart, mediaPart, livePart,
        h("label", { class: "alert-check" }, tone, h("span", {}, _("Attention tone first"))),
        h("div", { class: "grid two" },
          field(_("Times to play (1-10)"), repeat),
          field(_("Seconds between repeats"), gap)),
        field(_("Expires after (minutes)"), expiry, _("Empty: it ends when it has played.")))),
    formError,
    h("div", { class: "row" }, h("button", { type: "submit", "data-testid": "alert-review" },
      _("Review the alert"))));

    // 2. the confirmation
    const confirmHeading = h("h2", { tabindex: "-1", id: "alert-confirm-h" },
      _("Confirm the alert"));
    const confirmBody = h("div", {});
    const confirmCount = h("p", { class: "alert-reach-count", "data-testid": "alert-confirm-count",
      role: "status" });
    const sendBtn = h("button", { type: "button", class: "danger", "data-testid": "alert-confirm",
      onclick: () => send() }, _("Send the alert now"));
    const confirmBox = h("section", { class: "card alert-confirm", hidden: true,
      "data-testid": "alert-confirmation", "aria-labelledby": "alert-confirm-h" },
    confirmHeading, confirmBody, confirmCount,
    h("div", { class: "row" }, sendBtn,
      h("button", { type: "button", class: "secondary", "data-testid": "alert-back",
        onclick: () => show("form") }, _("Back"))));

    // 3. the proof of reach
    const sentHeading = h("h2", { tabindex: "-1", id: "alert-sent-h" }, _("Alert sent"));
    const sentTitle = h("p", { class: "alert-sent-title", "data-testid": "alert-sent-title" });
    const sentStatus = h("p", { "data-testid": "alert-status", role: "status" });
    const reachBar = h("progress", { max: "1", value: "0", "data-testid": "alert-reach-bar",
      "aria-label": _("Loudspeakers reached") });
    const reachText = h("p", { class: "alert-reach-count", "data-testid": "alert-reached",
      "aria-live": "polite" });
    const reachMore = h("p", { class: "muted", "data-testid": "alert-reach-detail" });
    const warnings = h("ul", { class: "warn", "data-testid": "alert-warnings" });
    const cancelBtn = h("button", { type: "button", class: "danger", "data-testid": "alert-cancel",
      onclick: () => cancel() }, _("Cancel the alert"));
    const newBtn = h("button", { type: "button", class: "secondary", "data-testid": "alert-new",
      onclick: () => { stopPoll(); show("form"); } }, _("Prepare another alert"));
    const sentBox = h("section", { class: "card alert-sent", hidden: true,
      "data-testid": "alert-progress", "aria-labelledby": "alert-sent-h" },
    sentHeading, sentTitle, sentStatus, reachBar, reachText, reachMore, warnings,
    h("div", { class: "row" }, cancelBtn, newBtn));

    const alertList = activeAlerts();
    const fresh = freshnessLine("alert-freshness");
    container.append(fresh.element, form, confirmBox, sentBox,
      h("section", { class: "card", "aria-labelledby": "alert-active-h" },
        h("h2", { id: "alert-active-h" }, _("Alerts on air")), alertList.element));

    const show = (which) => {
      step = which;
      form.hidden = which !== "form";
      confirmBox.hidden = which !== "confirm";
      sentBox.hidden = which !== "sent";
      if (which === "confirm") confirmHeading.focus();
      if (which === "sent") sentHeading.focus();
    };

    // what the chosen zones hold. An alert reaches the loudspeakers whose audio is connected
    // when it plays (what its reach counts); those online on the control link (MQTT) are
    // told to raise their volume, and are said beside
    const reachOf = (ids) => endpointTotals(ids, status && status.endpoints_by_zone);
    const reachSentence = (t) => _("It will reach {connected} loudspeakers whose audio is connected now, of {registered} registered in these zones ({online} online on the control link).", t);
    const drawReachNote = () => {
      if (!status || !status.endpoints_by_zone) { reachNote.textContent = ""; return; }
      reachNote.textContent = chosen.length ? reachSentence(reachOf(chosen))
        : _("Choose the zones to alert.");
    };
    const drawCounts = () => {
      const byZone = status.endpoints_by_zone;
      for (const [id, el] of counts) {
        el.textContent = byZone ? _("{connected}/{registered} connected", reachOf([id])) : "";
      }
      drawReachNote();
      if (step === "confirm") drawConfirmCount();
    };
    const drawConfirmCount = () => {
      if (!pending) return;
      const t = reachOf(pending.body.zones);
      confirmCount.dataset.online = String(t.online);
      confirmCount.dataset.connected = String(t.connected);
      confirmCount.dataset.registered = String(t.registered);
      confirmCount.textContent = status && status.endpoints_by_zone ? reachSentence(t)
        : _("The number of loudspeakers is not known yet.");
      confirmCount.className = `alert-reach-count ${t.connected < t.registered ? "warn" : ""}`;
    };

    let mountsKey = "";
    const drawMounts = () => {
      const known = new Map(((status && status.mounts) || []).map((m) => [m.mount, m]));
      if (!known.has(DEFAULT_MOUNT)) known.set(DEFAULT_MOUNT, { mount: DEFAULT_MOUNT, connected: false });
      const list = [...known.values()];
      const key = JSON.stringify([list.map((m) => [m.mount, m.connected]), state.lang]);
      if (key === mountsKey) return;
      mountsKey = key;
      const keep = mountSelect.value || DEFAULT_MOUNT;
      mountSelect.replaceChildren(...list.map((m) => h("option", { value: m.mount },
        `/live/${m.mount} — ` + (m.connected ? _("connected") : _("not connected")))));
      mountSelect.value = list.some((m) => m.mount === keep) ? keep : DEFAULT_MOUNT;
    };

    const loadMedia = async () => {
      try {
        media = (await api("GET", "/api/v1/media")).media;
      } catch (err) {
        mediaSelect.replaceChildren(h("option", { value: "" }, err.message));
        return;
      }
      mediaSelect.replaceChildren(
        h("option", { value: "" }, media.length ? _("Choose a file…") : _("The library is empty.")),
        ...media.map((m) => h("option", { value: m.id },
          `${m.title || m.filename} (${fmtDuration(m.duration_s)})`)));
      titles = await mediaTitles();
    };

    // the body POST /api/v1/alerts takes (loa/control/alerts/model.py parse_spec)
    const build = () => {
      if (!chosen.length) throw new Error(_("Choose at least one zone."));
      const k = kind.value();
      let content;
      if (k === "text") {
        const t = text.value.trim();
        if (!t) throw new Error(_("Write the message to read aloud."));
        content = { kind: "text", text: t, voice: voice.value };
      } else if (k === "media") {
        if (!mediaSelect.value) throw new Error(_("Choose a file of the library."));
        content = { kind: "media", id: mediaSelect.value };
      } else {
        content = { kind: "live", mount: mountSelect.value || DEFAULT_MOUNT };
      }
      const times = Number(repeat.value || "1");
      if (!Number.isInteger(times) || times < 1 || times > MAX_REPEAT) {
        throw new Error(_("Play it 1 to {max} times.", { max: MAX_REPEAT }));
      }
      const body = { class: cls.value(), zones: topMost(chosen), content, tone: tone.checked,
        repeat: times };
      if (gap.value !== "") {
        const g = Number(gap.value);
        if (!Number.isFinite(g) || g < 0 || g > MAX_GAP_S) {
          throw new Error(_("The pause between repeats is 0 to {max} seconds.", { max: MAX_GAP_S }));
        }
        body.gap_s = g;
      }
      if (expiry.value !== "") {
        const m = Number(expiry.value);
        if (!Number.isFinite(m) || m <= 0) throw new Error(_("The expiry is a number of minutes."));
        body.expires_in_s = Math.round(m * 60);
      }
      return body;
    };

    const review = () => {
      formError.textContent = "";
      let body;
      try {
        body = build();
      } catch (err) {
        formError.textContent = err.message;
        return;
      }
      const c = body.content;
      const what = c.kind === "text" ? _("Text read aloud") + `: “${c.text}”`
        : c.kind === "media" ? _("File") + `: ${titles.get(c.id) || c.id}`
          : _("Live mount") + `: /live/${c.mount}`;
      // a live alert has no end of its own: without an expiry it plays until cancelled
      const ends = body.expires_in_s ? fmtTime(Date.now() / 1000 + body.expires_in_s)
        : c.kind === "live" ? _("when it is cancelled (no expiry is set)")
          : _("when it has played");
      const item = (label, value) => h("div", { class: "alert-summary-row" },
        h("dt", {}, label), h("dd", {}, value));
      confirmBody.replaceChildren(h("dl", { class: "alert-summary" },
        item(_("Class"), classWord(body.class)),
        item(_("Zones"), body.zones.map(zoneName).join(", ")),
        item(_("Content"), what),
        item(_("Attention tone first"), body.tone ? _("yes") : _("no")),
        item(_("Times to play"), String(body.repeat)),
        item(_("Expires"), ends)));
      const notes = [];
      if (c.kind === "live") {
        const m = ((status && status.mounts) || []).find((x) => x.mount === c.mount);
        if (!m || !m.connected) {
          notes.push(_("No source is connected to /live/{mount}: the alert is not heard until one connects.", { mount: c.mount }));
        }
        if (!body.expires_in_s) notes.push(_("It plays until it is cancelled: no expiry is set."));
      }
      if (notes.length) {
        confirmBody.append(h("ul", { class: "warn", "data-testid": "alert-confirm-notes" },
          notes.map((n) => h("li", {}, n))));
      }
      pending = { body };
      drawConfirmCount();
      show("confirm");
    };

    // 3. send, then watch its reach
    let alertId = null;
    const stopPoll = () => { if (poll) { clearInterval(poll); poll = null; } };
    const drawSent = (a) => {
      sentTitle.textContent = alertTitle(a, titles);
      sentStatus.textContent = `${classWord(a.class)} · ${alertStatusWord(a.status)}`;
      sentStatus.className = a.status === "active" ? "error" : "";
      const r = a.reach || {};
      reachBar.max = Math.max(1, r.targeted || 0);
      reachBar.value = r.reached || 0;
      reachText.dataset.reached = String(r.reached || 0);
      reachText.dataset.targeted = String(r.targeted || 0);
      reachText.textContent = _("Reached {reached} of {targeted} loudspeakers", {
        reached: r.reached || 0, targeted: r.targeted || 0 });
      const first = a.timing_ms && a.timing_ms.tone_first;
      reachMore.textContent = [
        _("{count} have started the message", { count: r.message_reached || 0 }),
        _("{count} confirmed playing it", { count: r.played || 0 }),
        typeof first === "number" ? _("the first in {seconds} s", {
          seconds: fmtNumber(first / 1000, { max: 2, min: 2 }) }) : null,
      ].filter(Boolean).join(" · ");
      const final = FINAL.has(a.status);
      cancelBtn.hidden = final;
      sentHeading.textContent = final ? _("Alert ended") : _("Alert sent");
      if (final) stopPoll();
    };
    const watch = (id) => {
      stopPoll();
      let busy = false;
      poll = setInterval(async () => {
        if (busy) return;
        busy = true;
        try {
          const data = await api("GET", `/api/v1/alerts/${encodeURIComponent(id)}`);
          if (alertId === id) drawSent(data.alert);
        } catch (err) {
          reachMore.textContent = err.message;
        } finally {
          busy = false;
        }
      }, POLL_MS);
    };

    const send = async () => {
      if (!pending) return;
      sendBtn.disabled = true;
      const out = await attempt(() => api("POST", "/api/v1/alerts", pending.body));
      sendBtn.disabled = false;
      if (!out) { sendBtn.focus(); return; } // disabled meanwhile, it had lost the keyboard
      alertId = out.alert.id;
      warnings.replaceChildren(...(out.errors || []).map((w) => h("li", {}, w)));
      drawSent(out.alert);
      show("sent");
      watch(alertId);
    };

    const cancel = async () => {
      if (!alertId) return;
      cancelBtn.disabled = true;
      const out = await attempt(() => api("DELETE", `/api/v1/alerts/${encodeURIComponent(alertId)}`));
      cancelBtn.disabled = false;
      if (out) {
        toast(_("Alert cancelled."));
        drawSent(out.alert);
        sentHeading.focus(); // the cancel button is gone: the result's heading takes the keyboard
      } else {
        cancelBtn.focus();
      }
    };

    showPart();
    show("form");
    drawMounts();
    loadMedia();
    const stopStatus = watchStatus((data, how) => {
      status = data;
      drawCounts();
      drawMounts();
      alertList.update(status, titles);
      fresh.update(how);
    }, (err) => fresh.failed(err));
    return () => {
      stopStatus();
      stopPoll();
    };
  },
};
