// Loa's operator console: the shell every page shares.
//
// No build step and nothing fetched from the internet: plain ES modules served by Loa
// (/console/...). Each page is a module of ./pages/ whose default export is
// {render(container) -> cleanup?}; the shell signs the user in, draws the navigation the
// user's rights allow, keeps the live status stream (server-sent events, /api/v1/events)
// and routes by the URL's hash (#/overview, #/live, ...).
//
// Every text goes through _("English msgid", {fields}): the msgids are extracted by
// ./run i18n (Babel's JavaScript extractor) into the same catalogue as the server's, and
// served as /console/i18n/<lang>.json. Vietnamese first; the choice is kept per browser.

const CSRF_HEADER = "X-CSRF-Token";
const LANG_KEY = "loa.lang";
export const TIME_ZONE = "Asia/Ho_Chi_Minh";

/** Mark a msgid for extraction without translating it now (translated where shown). */
export const N_ = (msgid) => msgid;

// the pages, in the navigation's order; `right` hides a page from whoever lacks it
export const PAGES = [
  { id: "overview", title: N_("Overview") },
  { id: "live", title: N_("Go live"), right: "operate" },
  { id: "studio", title: N_("Studio"), right: "operate" },
  { id: "alert", title: N_("Emergency alert"), right: "alert" },
  { id: "schedule", title: N_("Schedule") },
  { id: "media", title: N_("Media") },
  { id: "endpoints", title: N_("Loudspeakers") },
  { id: "alarms", title: N_("Alarms") },
  { id: "logs", title: N_("Logs") },
  { id: "reports", title: N_("Reports") },
  { id: "users", title: N_("Users"), role: "admin" },
];

// the roles of loa/control/auth.py, as people say them
export const ROLE_WORDS = {
  admin: N_("Admin"), operator: N_("Operator"), alert: N_("Alert official"), viewer: N_("Viewer"),
};
/** A role (admin, operator, alert, viewer) in words, in the console's language. */
export const roleName = (id) => (ROLE_WORDS[id] ? _(ROLE_WORDS[id]) : id);

// espeak-ng's Vietnamese voices (loa/codecs/tts.py VOICES), for every "text read aloud"
export const VOICES = [
  ["vi", N_("Northern voice")],
  ["vi-vn-x-central", N_("Central voice")],
  ["vi-vn-x-south", N_("Southern voice")],
];

// what the pages share: who is signed in, the last status snapshot, the zones of the scope
export const state = { session: null, csrf: "", status: null, zones: [], lang: "vi" };

let messages = {};

/** The message `msgid` in the console's language, its {name} fields filled from `fields`. */
export function _(msgid, fields) {
  const text = messages[msgid] || msgid;
  if (!fields) return text;
  return text.replace(/\{(\w+)(![rs])?\}/g, (whole, name, conv) =>
    name in fields ? (conv === "!r" ? `'${fields[name]}'` : String(fields[name])) : whole);
}

async function loadMessages(lang) {
  messages = {};
  if (lang === "en") return;
  try {
    const resp = await fetch(`/console/i18n/${lang}.json`);
    if (resp.ok) messages = await resp.json();
  } catch (err) {
    console.warn("no catalogue for", lang, err);
  }
}

/** An API call that failed: `status` and the server's message (in the console's language). */
export class ApiFailure extends Error {
  constructor(status, message, data) {
    super(message);
    this.status = status;
    this.data = data || {};
  }
}

/**
 * One API call with the session cookie (and its CSRF token on a change). `body`: an object
 * sent as JSON, a FormData (multipart), or a Blob/string sent as is (with `type`). With
 * `onProgress(fraction)` the upload reports its progress (XMLHttpRequest). Resolves to the
 * parsed JSON (or the text, for a non-JSON answer); rejects with ApiFailure.
 */
export async function api(method, path, body, { type, onProgress, accept } = {}) {
  const headers = { "Accept-Language": state.lang };
  if (accept) headers.Accept = accept;
  if (method !== "GET" && method !== "HEAD" && state.csrf) headers[CSRF_HEADER] = state.csrf;
  let payload = body;
  if (body !== undefined && body !== null && !(body instanceof FormData) &&
      !(body instanceof Blob) && typeof body !== "string") {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  } else if (type) {
    headers["Content-Type"] = type;
  }
  if (onProgress) return xhrCall(method, path, payload, headers, onProgress);
  const resp = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  return answer(resp.status, resp.headers.get("Content-Type") || "", await resp.text());
}

function answer(status, contentType, text) {
  let data = text;
  if (contentType.startsWith("application/json")) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (status >= 400) {
    const message = (data && typeof data === "object" && data.error) ||
      _("the server answered {status}", { status });
    if (status === 401 && state.session) signedOut();
    throw new ApiFailure(status, message, typeof data === "object" ? data : {});
  }
  return data;
}

function xhrCall(method, path, payload, headers, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      try {
        resolve(answer(xhr.status, xhr.getResponseHeader("Content-Type") || "", xhr.responseText));
      } catch (err) { reject(err); }
    };
    xhr.onerror = () => reject(new ApiFailure(0, _("the server cannot be reached")));
    xhr.send(payload);
  });
}

/** Whether the signed-in user holds `right` (operate, alert, admin...); admin implies
 * every right, as the server's Principal.may has it. */
export function may(right) {
  const rights = (state.session && state.session.rights) || [];
  return rights.includes(right) || rights.includes("admin");
}

/** An element: h("button", {class: "x", onclick: fn}, "text", child, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A short message at the screen's edge (the top on a phone, the bottom left corner on a wider
 * screen: never over the page's own controls for long); `kind` "error" for a refusal. A
 * click on it, or Escape, dismisses it; it goes by itself after 4 s (an error after 8 s). */
export function toast(text, kind = "info") {
  const el = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", {}, text),
    h("button", { type: "button", class: "toast-close", "aria-label": _("Dismiss") }, "×"));
  el.addEventListener("click", () => el.remove());
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

/**
 * Ask before a grave action, in place: `button` gives way to `question`, a button `yes`
 * (red) and "Cancel"; `action()` runs on yes. The keyboard goes to "yes", and back to
 * `button` afterwards (Escape or "Cancel": nothing done).
 */
export function askFirst(button, question, yes, action) {
  const id = button.dataset.testid;
  const yesBtn = h("button", { type: "button", class: "danger",
    "data-testid": id ? `${id}-confirm` : null }, yes);
  const noBtn = h("button", { type: "button", class: "secondary",
    "data-testid": id ? `${id}-cancel` : null }, _("Cancel"));
  const box = h("span", { class: "ask", role: "group", "aria-label": question },
    h("span", { class: "warn" }, question), yesBtn, noBtn);
  const back = () => { if (box.isConnected) box.replaceWith(button); button.focus(); };
  yesBtn.addEventListener("click", () => { back(); action(); });
  noBtn.addEventListener("click", back);
  box.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); back(); }
  });
  button.replaceWith(box);
  yesBtn.focus();
}

/** A number in the console's language (Vietnamese 1.234,5; English 1,234.5), with `max`
 * decimals at most and `min` at least; "—" for none. */
export function fmtNumber(value, { max = 1, min = 0 } = {}) {
  if (value === null || value === undefined || value === "" || !Number.isFinite(Number(value))) {
    return "—";
  }
  return new Intl.NumberFormat(state.lang === "en" ? "en-GB" : "vi-VN",
    { maximumFractionDigits: max, minimumFractionDigits: min }).format(Number(value));
}

/** Run `fn`; show its ApiFailure (or any error) as an error toast instead of throwing. */
export async function attempt(fn) {
  try {
    return await fn();
  } catch (err) {
    toast(err.message || String(err), "error");
    return undefined;
  }
}

/** A unix time (s) as the station's local date and time. */
export function fmtTime(unix, { date = true } = {}) {
  if (unix === null || unix === undefined) return "—";
  const opts = { timeZone: TIME_ZONE, hour: "2-digit", minute: "2-digit", second: "2-digit",
    hour12: false };
  if (date) Object.assign(opts, { year: "numeric", month: "2-digit", day: "2-digit" });
  return new Intl.DateTimeFormat(state.lang === "en" ? "en-GB" : "vi-VN", opts)
    .format(new Date(unix * 1000));
}

/** A duration in seconds as m:ss or h:mm:ss. */
export function fmtDuration(s) {
  if (s === null || s === undefined) return "—";
  s = Math.round(s);
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return hh ? `${hh}:${two(mm)}:${two(ss)}` : `${mm}:${two(ss)}`;
}

/** The zones of the scope in tree order, each with its depth: [{zone, depth}] (an alert's
 * run-time group, `zone~alert`, is not a zone to pick). */
export function zonesInOrder() {
  const zones = state.zones.filter((z) => !z.id.includes("~"));
  const ids = new Set(zones.map((z) => z.id));
  const out = [];
  const walk = (zone, depth) => {
    out.push({ zone, depth });
    zones.filter((z) => z.parent === zone.id).forEach((z) => walk(z, depth + 1));
  };
  zones.filter((z) => !z.parent || !ids.has(z.parent)).forEach((z) => walk(z, 0));
  return out;
}

/** The zone's name (its id when unnamed or unknown). */
export function zoneName(id) {
  const zone = state.zones.find((z) => z.id === id);
  return (zone && zone.name) || id;
}

/**
 * The zones of the scope as a tree of checkboxes (or plain rows with `select: false`).
 * `onChange(selectedIds)`; `decorate(zone) -> Node|string` adds to each row. Returns
 * {element, selected(), set(ids)}.
 */
export function zoneTree({ select = true, onChange, decorate } = {}) {
  const ids = new Set(state.zones.map((z) => z.id));
  const roots = state.zones.filter((z) => !z.parent || !ids.has(z.parent));
  const chosen = new Set();
  const boxes = new Map();
  const item = (zone) => {
    const kids = state.zones.filter((z) => z.parent === zone.id);
    // a row without a checkbox is no label: it would hand its clicks to the first button
    // or input that `decorate` put in it
    const label = h(select ? "label" : "div", { class: "zone" },
      select ? h("input", {
        type: "checkbox", value: zone.id,
        onchange: (e) => {
          const on = e.target.checked;
          const mark = (z) => {
            (on ? chosen.add : chosen.delete).call(chosen, z.id);
            const box = boxes.get(z.id);
            if (box) box.checked = on;
            state.zones.filter((k) => k.parent === z.id).forEach(mark);
          };
          mark(zone);
          if (onChange) onChange([...chosen]);
        },
      }) : null,
      h("span", { class: "name" }, zone.name || zone.id),
      h("code", {}, zone.id),
      decorate ? decorate(zone) : null);
    const box = label.querySelector("input");
    if (box) boxes.set(zone.id, box);
    return h("li", {}, label, kids.length ? h("ul", {}, kids.map(item)) : null);
  };
  const element = h("ul", { class: "tree" }, roots.map(item));
  return {
    element,
    selected: () => [...chosen],
    set(list) {
      chosen.clear();
      for (const [id, box] of boxes) { box.checked = list.includes(id); if (box.checked) chosen.add(id); }
    },
  };
}

/** A table: `columns` [{title, value(row) -> Node|string}], `rows`. */
export function table(columns, rows, { empty } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty || _("Nothing to show."));
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.title)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => h("td", {
      "data-label": c.title }, c.value(r))))))));
}

// live updates: one EventSource for the console, fanned out to the page's listeners

const listeners = new Map();
let events = null;

/** Call `fn(data)` on each `name` event of the live stream (e.g. "status"); returns the
 * function that stops it. */
export function on(name, fn) {
  if (!listeners.has(name)) listeners.set(name, new Set());
  listeners.get(name).add(fn);
  if (name === "status" && state.status) fn(state.status);
  return () => listeners.get(name).delete(fn);
}

function emit(name, data) {
  for (const fn of listeners.get(name) || []) {
    try { fn(data); } catch (err) { console.error(err); }
  }
}

function openEvents() {
  if (events) events.close();
  // an EventSource sends no header of ours: its language (the alarms' words) in the query
  events = new EventSource(`/api/v1/events?lang=${encodeURIComponent(state.lang)}`);
  for (const name of ["status", "levels", "commands", "alert"]) {
    events.addEventListener(name, (e) => {
      const data = JSON.parse(e.data);
      if (name === "status") state.status = data;
      emit(name, data);
    });
  }
  events.onerror = () => emit("connection", { ok: false });
  events.onopen = () => emit("connection", { ok: true });
}

// signing in and out

async function refreshZones() {
  const data = await api("GET", "/api/v1/zones");
  state.zones = data.zones;
}

/** Who is signed in, in the header: their name, their roles in words and their scope's
 * zone by name (the whole line in its tooltip, for a phone that cuts it). */
function drawWho() {
  const s = state.session;
  const who = document.getElementById("who");
  if (!s) { who.replaceChildren(); who.removeAttribute("title"); return; }
  const name = s.display_name || s.user || s.name;
  const roles = (s.roles || []).map(roleName).join(", ");
  const scope = s.scope === "*" ? _("Every zone") : zoneName(s.scope);
  who.replaceChildren(h("strong", {}, name), " ", h("span", {}, `${roles} · ${scope}`));
  who.title = `${name} · ${roles} · ${scope}`;
}

async function signedIn(session, { focus = false } = {}) {
  state.session = session;
  state.csrf = session.csrf_token || state.csrf;
  document.getElementById("login").hidden = true;
  document.getElementById("page").hidden = false;
  document.getElementById("logout").hidden = false;
  await refreshZones();
  drawWho();
  drawNav();
  openEvents();
  await route();
  // the form that had the keyboard is gone: the page's title takes it
  if (focus) focusHeading();
}

/** Give the keyboard (and a screen reader's attention) to the page's title. */
function focusHeading() {
  const h1 = document.querySelector("#page h1");
  if (!h1) return;
  h1.tabIndex = -1;
  h1.focus({ preventScroll: true });
}

function signedOut() {
  state.session = null;
  state.csrf = "";
  if (events) { events.close(); events = null; }
  if (cleanup) { cleanup(); cleanup = null; }
  document.getElementById("login").hidden = false;
  document.getElementById("page").hidden = true;
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  drawWho();
  // the keyboard goes to the form, not to a button that vanished
  const username = document.querySelector("#login input[name=username]");
  if (username) username.focus();
}

async function login(e) {
  e.preventDefault();
  const form = e.target;
  const error = document.getElementById("login-error");
  error.textContent = "";
  try {
    const data = await api("POST", "/api/v1/login", {
      username: form.username.value, password: form.password.value });
    state.csrf = data.csrf_token;
    form.password.value = "";
    await signedIn(await api("GET", "/api/v1/session"), { focus: true });
  } catch (err) {
    error.textContent = err.message;
  }
}

// navigation

function visiblePages() {
  const s = state.session;
  return PAGES.filter((p) => (!p.right || may(p.right)) && (!p.role || s.roles.includes(p.role)));
}

function drawNav() {
  const nav = document.getElementById("nav");
  nav.replaceChildren(...visiblePages().map((p) =>
    h("a", { href: `#/${p.id}`, "data-page": p.id }, _(p.title))));
  nav.hidden = false;
  navHints();
}

/** A navigation wider than the screen (a phone's) scrolls sideways: a fade at the end that
 * has more links says so. */
function navHints() {
  const nav = document.getElementById("nav");
  const more = nav.scrollWidth - nav.clientWidth;
  nav.classList.toggle("more-before", more > 1 && nav.scrollLeft > 4);
  nav.classList.toggle("more-after", more > 1 && nav.scrollLeft < more - 4);
}

let cleanup = null;

async function route() {
  if (!state.session) return;
  const pages = visiblePages();
  const id = location.hash.replace(/^#\//, "").split("/")[0];
  const page = pages.find((p) => p.id === id) || pages[0];
  if (page.id !== id) {
    history.replaceState(null, "", `#/${page.id}`);
    // a page of the console this account may not open: say so rather than move silently
    const refused = PAGES.find((p) => p.id === id);
    if (refused) {
      toast(_("The page “{page}” is not open to your account (its role or scope); here is the overview instead.",
        { page: _(refused.title) }));
    }
  }
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.page === page.id) {
      a.setAttribute("aria-current", "page");
      a.scrollIntoView({ block: "nearest", inline: "nearest" });  // a phone's nav scrolls
      navHints();
    }
    else a.removeAttribute("aria-current");
  }
  if (cleanup) { cleanup(); cleanup = null; }
  const container = document.getElementById("page");
  container.replaceChildren(h("h1", {}, _(page.title)));
  container.dataset.page = page.id;
  document.title = `${_(page.title)} — Loa`;
  try {
    const mod = await import(`./pages/${page.id}.js`);
    cleanup = (await mod.default.render(container)) || null;
  } catch (err) {
    container.append(h("p", { class: "error", role: "alert" }, err.message || String(err)));
  }
}

function translateStatic() {
  // the page's own texts: the msgids of index.html, marked here for extraction
  const texts = { "Sign in": N_("Sign in"), Username: N_("Username"), Password: N_("Password") };
  for (const el of document.querySelectorAll("[data-i18n]")) {
    el.textContent = _(texts[el.dataset.i18n] || el.dataset.i18n);
  }
  document.getElementById("logout").textContent = _("Sign out");
  document.querySelector(".skip").textContent = _("Skip to the page");
}

async function setLanguage(lang) {
  state.lang = lang === "en" ? "en" : "vi";
  localStorage.setItem(LANG_KEY, state.lang);
  document.documentElement.lang = state.lang;
  await loadMessages(state.lang);
  translateStatic();
  if (state.session) { drawWho(); drawNav(); openEvents(); route(); }
}

async function start() {
  const select = document.getElementById("lang");
  select.value = localStorage.getItem(LANG_KEY) || "vi";
  select.addEventListener("change", () => setLanguage(select.value));
  await setLanguage(select.value);
  document.getElementById("login").addEventListener("submit", login);
  document.getElementById("logout").addEventListener("click", async () => {
    await attempt(() => api("POST", "/api/v1/logout"));
    signedOut();
  });
  window.addEventListener("hashchange", route);
  document.getElementById("nav").addEventListener("scroll", navHints, { passive: true });
  window.addEventListener("resize", navHints);
  // Escape dismisses the messages at the screen's edge
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") document.getElementById("toasts").replaceChildren();
  });
  try {
    await signedIn(await api("GET", "/api/v1/session"));
  } catch {
    signedOut();
  }
}

start();
