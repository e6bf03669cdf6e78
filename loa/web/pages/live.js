// Go live (Phát trực tiếp): pick zones on the tree and a source (a live mount), take the
// zones (POST /api/v1/zones/{zone}/live {"mount"}) and release them (DELETE). Beside each
// zone: what holds it now, the live requests on it, and what comes back when it is released
// (the best request left once its own live requests are gone), and, beside what is on air,
// the requests waiting for their source (the zone is not given back: it goes live again when
// the source comes, until released). Live from the status.
import { _, api, attempt, h, may, state, table, toast, zoneName, zoneTree } from "../app.js";
import {
  freshnessLine, onAirTitle, priorityBadge, priorityClass, priorityWord, requestTitle,
  topMost, waitingNote, waitingRequests, watchStatus,
} from "./overview.js";

const DEFAULT_MOUNT = "studio"; // always known to the server (loa/control/programmes.py)

/** The live requests made on the zone itself (what DELETE …/live releases there). */
function ownLive(zoneStatus) {
  return (zoneStatus.requests || []).filter((r) => r.zone === zoneStatus.zone &&
    r.programme && r.programme.kind === "live");
}

/** The live requests that hold the zone, its own and those made on a zone above it. */
function allLive(zoneStatus) {
  return (zoneStatus.requests || []).filter((r) => r.programme && r.programme.kind === "live");
}

/**
 * What the zone plays once its own live requests are released: the highest request left
 * that can play (the earlier one among equals), or null for silence.
 */
function afterRelease(zoneStatus) {
  const gone = new Set(ownLive(zoneStatus).map((r) => r.id));
  return (zoneStatus.requests || [])
    .filter((r) => !gone.has(r.id) && r.programme && r.programme.available !== false &&
      r.programme.kind !== "idle")
    .sort((a, b) => b.priority - a.priority || a.id - b.id)[0] || null;
}

export default {
  render(container) {
    if (!may("operate")) {
      container.append(h("p", { class: "empty" }, _("Going live needs the operate right.")));
      return undefined;
    }
    let status = null;
    let chosen = [];
    const notes = new Map(); // zone id -> its note in the tree

    const tree = zoneTree({
      onChange: (ids) => { chosen = ids; drawChoice(); },
      decorate: (zone) => {
        const note = h("span", { class: "live-note", "data-testid": `live-holder-${zone.id}` });
        notes.set(zone.id, note);
        return note;
      },
    });
    tree.element.dataset.testid = "live-zones";

    const mountSelect = h("select", { id: "live-mount", name: "mount",
      "data-testid": "live-mount" });
    const mountState = h("p", { class: "muted", "data-testid": "live-mount-state",
      role: "status" });
    mountSelect.addEventListener("change", () => drawMountState());
    const choice = h("p", { class: "muted", "data-testid": "live-choice", role: "status" });
    const takeBtn = h("button", { type: "button", "data-testid": "live-take",
      onclick: () => take() }, _("Take the chosen zones"));
    const releaseBtn = h("button", { type: "button", class: "secondary",
      "data-testid": "live-release", onclick: () => release(chosen) },
    _("Release the chosen zones"));
    const holders = h("div", { "data-testid": "live-holders" });
    const fresh = freshnessLine("live-freshness");

    container.append(
      fresh.element,
      h("div", { class: "grid two" },
        h("section", { class: "card", "aria-labelledby": "live-zones-h" },
          h("h2", { id: "live-zones-h" }, _("1. Zones")),
          h("p", { class: "muted" },
            _("Choosing a commune chooses its villages: a live source on a zone plays on the zones below it too.")),
          tree.element),
        h("section", { class: "card", "aria-labelledby": "live-source-h" },
          h("h2", { id: "live-source-h" }, _("2. Source")),
          h("label", { for: "live-mount" }, _("Live mount")),
          mountSelect,
          mountState,
          h("h2", {}, _("3. Take or release")),
          choice,
          h("div", { class: "row" }, takeBtn, releaseBtn))),
      h("section", { class: "card", "aria-labelledby": "live-holders-h" },
        h("h2", { id: "live-holders-h", tabindex: "-1" }, _("Who holds each zone")),
        holders));

    /** The keyboard's place after an action: back on `el` if the action took it away (a
     * button disabled meanwhile, or drawn anew), else where it is. */
    const refocus = (el) => {
      const now = document.activeElement;
      if (!now || now === document.body || !now.isConnected) {
        (el && el.isConnected ? el : container.querySelector("#live-holders-h")).focus();
      }
    };

    const mounts = () => {
      const known = new Map(((status && status.mounts) || []).map((m) => [m.mount, m]));
      if (!known.has(DEFAULT_MOUNT)) known.set(DEFAULT_MOUNT, { mount: DEFAULT_MOUNT, connected: false });
      return [...known.values()].sort((a, b) =>
        (a.mount === DEFAULT_MOUNT ? -1 : b.mount === DEFAULT_MOUNT ? 1 : a.mount.localeCompare(b.mount)));
    };

    let mountsKey = "";
    const drawMounts = () => {
      const list = mounts();
      const key = JSON.stringify([list.map((m) => [m.mount, m.connected]), state.lang]);
      if (key === mountsKey) return;
      mountsKey = key;
      const keep = mountSelect.value || DEFAULT_MOUNT;
      mountSelect.replaceChildren(...list.map((m) => h("option", { value: m.mount },
        `/live/${m.mount} — ` + (m.connected ? _("connected") : _("not connected")))));
      mountSelect.value = list.some((m) => m.mount === keep) ? keep : DEFAULT_MOUNT;
      drawMountState();
    };
    const drawMountState = () => {
      const m = mounts().find((x) => x.mount === mountSelect.value);
      if (m && m.connected) {
        mountState.textContent = m.title
          ? _("The source is connected; it sends “{title}”.", { title: m.title })
          : _("The source is connected.");
        mountState.className = "ok";
      } else {
        mountState.textContent = _("No source is connected to this mount: the zones taken keep playing what is below until one connects.");
        mountState.className = "warn";
      }
    };

    const drawChoice = () => {
      choice.textContent = chosen.length
        ? _("Chosen: {zones}", { zones: topMost(chosen).map(zoneName).join(", ") })
        : _("Choose one or more zones on the tree.");
      takeBtn.disabled = !chosen.length;
      releaseBtn.disabled = !chosen.length;
    };

    const drawNotes = () => {
      for (const z of status.zones || []) {
        const note = notes.get(z.zone);
        if (!note) continue;
        const prio = (z.on_air && z.on_air.priority) || 0;
        const waiting = new Set(waitingRequests(z).map((r) => r.id));
        const live = allLive(z).filter((r) => !waiting.has(r.id)); // the waiting: their note
        note.replaceChildren(
          h("span", { class: priorityClass(prio), title: String(prio) }, priorityWord(prio)),
          " ", h("span", {}, onAirTitle(z, status)));
        const badge = waitingBadge(z, `live-waiting-${z.zone}`);
        if (badge) note.append(badge); // append and replaceChildren would write a null as "null"
        if (live.length) {
          note.append(h("span", { class: "badge warn" }, _("live: {mounts}",
            { mounts: live.map((r) => r.label.replace(/^live\//, "")).join(", ") })));
        }
      }
    };

    /** The note of the requests of zone status `z` that wait for their source, as a badge
     * (test id `testid`), or null when none does. */
    const waitingBadge = (z, testid) => {
      const note = waitingNote(z, status);
      return note ? h("span", { class: "badge warn", title: note.tip, "data-testid": testid },
        note.text) : null;
    };

    /** Where a request made on a zone above comes from: its name, or (a zone outside the
     * user's scope, whose name the console is not told) "the zone above". */
    const fromZone = (id) => (state.zones.some((s) => s.id === id)
      ? _("(from {zone})", { zone: zoneName(id) }) : _("(from the zone above)"));

    let holdersKey = "";
    const drawHolders = () => {
      const zones = (status.zones || []).filter((z) => state.zones.some((s) => s.id === z.zone));
      const order = new Map(state.zones.map((z, i) => [z.id, i]));
      zones.sort((a, b) => order.get(a.zone) - order.get(b.zone));
      const key = JSON.stringify([zones.map((z) => [z.zone, z.on_air,
        (z.requests || []).map((r) => [r.id, r.priority, r.label, r.by,
          r.programme.available])]),
      (status.alerts || []).map((a) => a.id), state.lang]);
      if (key === holdersKey) return;
      holdersKey = key;
      // a request made on a zone above says so: it is released there
      const requestLine = (r, z) => h("div", { class: "live-req" }, priorityBadge(r.priority),
        " ", requestTitle(r, status),
        r.zone !== z.zone ? h("span", { class: "muted" }, " ", fromZone(r.zone)) : null,
        r.by ? h("span", { class: "muted", "data-testid": `live-by-${z.zone}-${r.id}` }, " ",
          _("taken by {who}", { who: r.by })) : null,
        r.programme && r.programme.available === false
          ? h("span", { class: "badge error" }, _("no signal")) : null);
      // the table is drawn anew: a row's button that had the keyboard gets it back, or, gone
      // with what it released, the table's heading takes it
      const had = holders.contains(document.activeElement) ? document.activeElement.dataset.testid
        : null;
      holders.replaceChildren(table([
        { title: _("Zone"), value: (z) => zoneName(z.zone) },
        { title: _("On air"), value: (z) => h("span", {},
          priorityBadge((z.on_air && z.on_air.priority) || 0), " ", onAirTitle(z, status),
          " ", waitingBadge(z, `live-onair-waiting-${z.zone}`)) },
        { title: _("Live requests"), value: (z) => {
          const live = allLive(z);
          return live.length ? h("div", {}, live.map((r) => requestLine(r, z))) : _("none");
        } },
        { title: _("After release"), value: (z) => {
          if (!ownLive(z).length) return h("span", { class: "muted" }, _("nothing live to release here"));
          const next = afterRelease(z);
          return next ? requestLine(next, z) : h("span", {}, _("Silence"));
        } },
        { title: _("Release"), value: (z) => (ownLive(z).length
          ? h("button", { type: "button", class: "secondary", "data-testid": `live-release-${z.zone}`,
            "aria-label": _("Release {zone}", { zone: zoneName(z.zone) }),
            onclick: () => release([z.zone]) }, _("Release"))
          : "—") },
      ], zones));
      if (had) {
        const again = holders.querySelector(`[data-testid="${CSS.escape(had)}"]`);
        (again || container.querySelector("#live-holders-h")).focus();
      }
    };

    const take = async () => {
      const mount = mountSelect.value || DEFAULT_MOUNT;
      const zones = topMost(chosen);
      const done = [];
      takeBtn.disabled = true;
      for (const zone of zones) {
        const ok = await attempt(() => api("POST", `/api/v1/zones/${encodeURIComponent(zone)}/live`,
          { mount }));
        if (ok) done.push(zone);
      }
      takeBtn.disabled = !chosen.length;
      refocus(takeBtn);
      if (done.length) {
        toast(_("Live from /live/{mount} on: {zones}", { mount, zones: done.map(zoneName).join(", ") }));
      }
    };

    const release = async (zones) => {
      const released = [];
      for (const zone of zones) {
        const out = await attempt(() => api("DELETE",
          `/api/v1/zones/${encodeURIComponent(zone)}/live`, {}));
        if (out && (out.released || []).length) released.push(zone);
      }
      if (released.length) {
        toast(_("Live released on: {zones}", { zones: released.map(zoneName).join(", ") }));
      } else {
        toast(_("Nothing was live on these zones themselves; a live request made on a zone above is released there."));
      }
    };

    drawChoice();
    drawMounts();
    return watchStatus((data, how) => {
      status = data;
      drawMounts();
      drawNotes();
      drawHolders();
      fresh.update(how);
    }, (err) => fresh.failed(err));
  },
};
