// The media page (Thư viện): upload audio with a progress bar, the library with title,
// duration, loudness and tags, a preview in the browser, and delete (refused by the API while
// an item plays or is scheduled: its reason is shown beside the item).
//
// A file is previewed before it is uploaded from the browser's own copy, and a library item
// from its "audio_url" (`GET /api/v1/media/{id}/audio`: the stored file, with Range, so the
// player can seek; the session cookie goes with it).
import {
  _, api, attempt, fmtDuration, fmtNumber, fmtTime, h, may, state, table, toast, zoneName,
} from "../app.js";

/** Whether the caller's scope is the whole tree (the station's items need it to delete). */
function coversAll() {
  const s = state.session;
  if (!s) return false;
  if (s.scope === "*") return true;
  const zone = state.zones.find((z) => z.id === s.scope);
  return !!zone && !zone.parent;
}

/** Whether the caller may delete `item` (the API decides; this only hides the button). */
function deletable(item) {
  if (!may("operate")) return false;
  return item.zone ? state.zones.some((z) => z.id === item.zone) : coversAll();
}

const lufs = (v) => (v === null || v === undefined ? _("not measured")
  : `${fmtNumber(v, { max: 1, min: 1 }).replace("-", "−")} LUFS`);

/** The media ids a schedule item plays. */
function mediaOf(content) {
  if (!content) return [];
  if (content.kind === "media") return [content.id];
  if (content.kind === "playlist") return content.items;
  return [];
}

export default {
  async render(container) {
    let items = [];
    let schedules = [];
    let query = "";
    const confirming = new Set(); // ids whose delete asks to confirm
    const refusals = new Map(); // id -> the API's reason for refusing to delete
    const playing = new Set(); // ids whose preview is open
    let previewUrl = null;

    // -- upload
    const list = h("div", { "data-testid": "media-list" });
    const fileInput = h("input", { type: "file", id: "media-file", multiple: true,
      accept: "audio/*,.mp3,.wav,.ogg,.oga,.opus,.flac,.m4a,.aac",
      "data-testid": "media-file", onchange: () => chosen() });
    const titleInput = h("input", { id: "media-title", maxlength: 200,
      "data-testid": "media-title" });
    const tagsInput = h("input", { id: "media-tags", placeholder: _("news, weather"),
      "data-testid": "media-tags" });
    const localPreview = h("audio", { controls: true, preload: "metadata", hidden: true,
      "data-testid": "media-local-preview", "aria-label": _("Listen to the chosen file") });
    const progress = h("progress", { max: 1, value: 0, hidden: true,
      "data-testid": "media-progress", "aria-label": _("Upload progress") });
    const progressText = h("p", { role: "status", "aria-live": "polite",
      "data-testid": "media-progress-text" });
    const uploadButton = h("button", { type: "submit", "data-testid": "media-upload" },
      _("Upload"));

    function chosen() {
      const files = [...fileInput.files];
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = null;
      localPreview.hidden = files.length !== 1;
      if (files.length === 1) {
        previewUrl = URL.createObjectURL(files[0]);
        localPreview.src = previewUrl;
        if (!titleInput.value) titleInput.value = files[0].name.replace(/\.[^.]+$/, "");
      } else {
        localPreview.removeAttribute("src");
      }
      titleInput.disabled = files.length > 1; // each file keeps its own name as title
    }

    async function upload(e) {
      e.preventDefault();
      const files = [...fileInput.files];
      if (!files.length) {
        progressText.textContent = _("Choose an audio file first.");
        return;
      }
      uploadButton.disabled = true;
      progress.hidden = false;
      let failed = false;
      for (const [i, file] of files.entries()) {
        const form = new FormData();
        form.append("file", file, file.name);
        if (files.length === 1 && titleInput.value.trim()) form.append("title", titleInput.value.trim());
        if (tagsInput.value.trim()) form.append("tags", tagsInput.value);
        const onProgress = (fraction) => {
          progress.value = (i + fraction) / files.length;
          const fields = { name: file.name, pct: Math.round(fraction * 100), i: i + 1,
            n: files.length };
          if (fraction >= 1) {
            progressText.textContent = _("Checking {name} and measuring its loudness…", fields);
          } else if (files.length > 1) {
            progressText.textContent = _("Uploading {name} (file {i} of {n}): {pct}%", fields);
          } else {
            progressText.textContent = _("Uploading {name}: {pct}%", fields);
          }
        };
        onProgress(0);
        try {
          const res = await api("POST", "/api/v1/media", form, { onProgress });
          toast(res.created ? _("{title} added to the library", { title: res.media.title })
            : _("{title} was already in the library", { title: res.media.title }));
        } catch (err) {
          failed = true;
          progressText.textContent = `${file.name}: ${err.message}`;
          toast(`${file.name}: ${err.message}`, "error");
        }
      }
      progress.value = 1;
      if (!failed) {
        progressText.textContent = _("Done.");
        e.target.reset();
        chosen();
      }
      uploadButton.disabled = false;
      await attempt(load);
    }

    const uploadCard = may("operate") ? h("section", { class: "card",
      "aria-labelledby": "media-upload-h" },
    h("h2", { id: "media-upload-h" }, _("Upload")),
    h("form", { class: "grid", onsubmit: upload, "data-testid": "media-upload-form" },
      h("label", { for: "media-file" }, h("span", {}, _("Audio files")), fileInput),
      localPreview,
      h("div", { class: "grid two" },
        h("label", { for: "media-title" }, h("span", {}, _("Title")), titleInput),
        h("label", { for: "media-tags" }, h("span", {}, _("Tags (comma-separated)")),
          tagsInput)),
      h("div", { class: "row" }, uploadButton), progress, progressText)) : null;

    // -- the library
    const search = h("input", { type: "search", id: "media-search",
      "data-testid": "media-search", oninput: (e) => { query = e.target.value; draw(); } });

    async function load() {
      const [m, s] = await Promise.all([api("GET", "/api/v1/media"),
        api("GET", "/api/v1/schedules").catch(() => ({ schedules: [] }))]);
      items = m.media;
      schedules = s.schedules;
      draw();
    }

    const usedBy = (id) => schedules.filter((s) => mediaOf(s.content).includes(id));

    async function remove(item) {
      confirming.delete(item.id);
      try {
        await api("DELETE", `/api/v1/media/${encodeURIComponent(item.id)}`);
        refusals.delete(item.id);
        toast(_("{title} deleted", { title: item.title }));
        await load();
      } catch (err) {
        // 409: it plays or is scheduled; the API says which, in the caller's language
        refusals.set(item.id, err.message);
        if (err.status !== 409) toast(err.message, "error");
        draw();
        const msg = list.querySelector(`[data-testid="media-error-${item.id}"]`);
        if (msg) msg.focus();
      }
    }

    function actions(item) {
      const out = [];
      if (item.audio_url) {
        out.push(h("button", { type: "button", class: "secondary",
          "data-testid": `media-preview-${item.id}`, "aria-expanded": String(playing.has(item.id)),
          onclick: () => {
            if (playing.has(item.id)) playing.delete(item.id);
            else playing.add(item.id);
            draw();
            const player = list.querySelector(`[data-testid="media-audio-${item.id}"]`);
            // asked for by this click: the browser lets it play (a refusal leaves the controls)
            if (player) player.play().catch(() => {});
          } }, playing.has(item.id) ? _("Hide preview") : _("Preview")));
        if (playing.has(item.id)) {
          const player = h("audio", { controls: true, preload: "none", src: item.audio_url,
            "data-testid": `media-audio-${item.id}`,
            "aria-label": _("Preview of {title}", { title: item.title }) });
          player.style.maxWidth = "100%"; // a phone's card is narrower than the player
          out.push(player);
        }
      }
      if (deletable(item)) {
        if (confirming.has(item.id)) {
          out.push(h("span", { class: "warn" }, _("Delete it?")),
            h("button", { type: "button", class: "danger",
              "data-testid": `media-delete-confirm-${item.id}`, onclick: () => remove(item) },
            _("Delete")),
            h("button", { type: "button", class: "secondary",
              onclick: () => { confirming.delete(item.id); draw(); } }, _("Keep it")));
        } else {
          out.push(h("button", { type: "button", class: "secondary",
            "data-testid": `media-delete-${item.id}`, "aria-label": _("Delete {title}",
              { title: item.title }),
            onclick: () => { confirming.add(item.id); refusals.delete(item.id); draw();
              const yes = list.querySelector(`[data-testid="media-delete-confirm-${item.id}"]`);
              if (yes) yes.focus(); } }, _("Delete")));
        }
      }
      if (refusals.has(item.id)) {
        out.push(h("p", { class: "error", role: "alert", tabindex: "-1",
          "data-testid": `media-error-${item.id}` }, refusals.get(item.id)));
      }
      return out.length ? h("div", { class: "row" }, out) : "—";
    }

    function draw() {
      const q = query.trim().toLowerCase();
      const rows = items.filter((m) => !q || [m.title, m.filename, ...(m.tags || [])]
        .some((t) => t && t.toLowerCase().includes(q)));
      list.replaceChildren(table([
        { title: _("Title"), value: (m) => h("span", { "data-testid": `media-row-${m.id}` },
          h("strong", {}, m.title), h("br"), h("small", { class: "muted" }, m.filename)) },
        { title: _("Duration"), value: (m) => fmtDuration(m.duration_s) },
        { title: _("Loudness"), value: (m) => lufs(m.loudness_lufs) },
        { title: _("Tags"), value: (m) => ((m.tags || []).filter(Boolean).length
          ? h("span", { class: "row tags" }, m.tags.filter(Boolean).map((t) =>
            h("span", { class: "badge" }, t))) : "—") },
        { title: _("Belongs to"), value: (m) => (m.zone ? zoneName(m.zone)
          : _("the whole station")) },
        { title: _("Uploaded"), value: (m) => `${fmtTime(m.created_at)} · ${m.uploader}` },
        { title: _("Scheduled in"), value: (m) => {
          const used = usedBy(m.id);
          return used.length ? used.map((s) => s.title).join(", ") : "—";
        } },
        { title: _("Actions"), value: actions },
      ], rows, { empty: q ? _("No file matches.") : _("The library is empty.") }));
    }

    container.append(
      uploadCard || "",
      h("section", { class: "card", "aria-labelledby": "media-list-h" },
        h("h2", { id: "media-list-h" }, _("Library")),
        h("label", { for: "media-search", class: "search" },
          h("span", {}, _("Search by title, file name or tag")), search),
        list));
    draw();
    await attempt(load);
    return () => { if (previewUrl) URL.revokeObjectURL(previewUrl); };
  },
};
